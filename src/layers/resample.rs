//! Resampling up: interpolation (nearest, bilinear, bicubic; by scale or to a size) and
//! max-unpooling with the indices of its paired max-pool.

use super::{
    mul, need_4d, pair_label, per_element, Arity, Attrs, Category, Cost, Geometry, Layer, OpType,
    Shape, Training,
};
use crate::convention::Convention;
use crate::error::Diagnostic;

pub const UPSAMPLE: OpType = OpType {
    name: "upsample",
    aliases: &["interpolate", "resize"],
    keys: &["mode", "scale", "size", "align_corners"],
    arity: Arity::Exactly(1),
    fuses_bn: false,
    build: build_upsample,
    summary: "interpolation by an integer `scale` or to a `size` (torch.nn.Upsample)",
};

pub const MAX_UNPOOL2D: OpType = OpType {
    name: "max_unpool2d",
    aliases: &["unpool", "maxunpool"],
    keys: &["kernel", "stride", "padding", "size"],
    arity: Arity::Exactly(2),
    fuses_bn: false,
    build: build_unpool,
    summary: "max-unpooling: `in: [x, pool]` where `pool` is the max-pool whose indices it uses (torch.nn.MaxUnpool2d)",
};

#[derive(Debug)]
struct Upsample {
    mode: &'static str,
    scale: Option<[u64; 2]>,
    size: Option<[u64; 2]>,
    align_corners: bool,
}

fn build_upsample(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    need_4d("upsample", a.input())?;
    let mode = a.choice(
        "mode",
        &["nearest", "nearest_exact", "bilinear", "bicubic"],
        "nearest",
    )?;
    let scale = a.pair("scale")?;
    let size = a.pair("size")?;
    if scale.is_some() == size.is_some() {
        return Err(
            Diagnostic::new("upsample needs exactly one of `scale` and `size`")
                .at(&a.node_path)
                .help("e.g. `scale: 2`, or `size: [28, 28]`"),
        );
    }
    let interpolating = matches!(mode, "bilinear" | "bicubic");
    let align_corners = match a.raw("align_corners")? {
        Some(v) if !interpolating => {
            return Err(Diagnostic::new(format!(
                "align_corners only applies to bilinear and bicubic, not {mode}"
            ))
            .at(&v.path))
        }
        Some(_) => a.bool("align_corners", false)?,
        None => false,
    };
    Ok(Box::new(Upsample {
        mode,
        scale,
        size,
        align_corners,
    }))
}

impl Layer for Upsample {
    fn op(&self) -> &'static str {
        "upsample"
    }
    fn label(&self) -> String {
        match (self.scale, self.size) {
            (Some(s), _) => format!("upsample ×{} {}", pair_label(s), self.mode),
            (_, Some(s)) => format!("upsample → {}×{} {}", s[0], s[1], self.mode),
            _ => "upsample".into(),
        }
    }
    fn category(&self) -> Category {
        Category::Resample
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        let [h, w] = match (self.scale, self.size) {
            (Some(k), _) => [mul(&[s[2], k[0]])?, mul(&[s[3], k[1]])?],
            (_, Some(sz)) => sz,
            _ => [s[2], s[3]],
        };
        Ok(vec![Shape(vec![s[0], s[1], h, w])])
    }
    fn cost(&self, _inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Nearest copies; bilinear weighs 4 neighbours (4 multiplies + 3 adds); bicubic 16 (31).
        let per = match self.mode {
            "bilinear" => 7,
            "bicubic" => 31,
            _ => 0,
        };
        Ok(Cost {
            macs: 0,
            flops: per_element(&outputs[0], per)?,
        })
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        let s = &inputs[0].0;
        let out = match (self.scale, self.size) {
            (Some(k), _) => [s[2] * k[0], s[3] * k[1]],
            (_, Some(sz)) => sz,
            _ => [s[2], s[3]],
        };
        Geometry::Resize {
            num: out,
            den: [s[2], s[3]],
            taps: match self.mode {
                "bilinear" => 2,
                "bicubic" => 4,
                _ => 1,
            },
            align_corners: self.align_corners,
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("Upsample")
    }
    fn convention_cost(
        &self,
        c: Convention,
        _inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let y = &outputs[0];
        let per = match (c, self.mode) {
            // fvcore: aten::upsample_nearest2d 1 per output, upsample_bilinear2d 4; no rule
            // for bicubic or nearest-exact.
            (Convention::Fvcore, "nearest") => 1,
            (Convention::Fvcore, "bilinear") => 4,
            // ptflops: numel(output) in the module hook, again in the patched F.interpolate.
            (Convention::Ptflops, _) => 2,
            // thop: nearest 1, bilinear 11, bicubic 259 per output; "nearest-exact" unknown.
            (Convention::Thop, "nearest") => 1,
            (Convention::Thop, "bilinear") => 11,
            (Convention::Thop, "bicubic") => 259,
            _ => 0,
        };
        per_element(y, per)
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // Backward needs only the sizes; each output gradient is added into its source(s):
        // as many FLOPs as forward, and at least one add per output element.
        let forward = self.cost(inputs, outputs)?.flops;
        Ok(Training {
            forward_flops: forward,
            backward_flops: if input_grad {
                forward.max(outputs[0].numel()?)
            } else {
                0
            },
            ..Default::default()
        })
    }
}

#[derive(Debug)]
struct Unpool {
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: [u64; 2],
    size: Option<[u64; 2]>,
}

fn build_unpool(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    need_4d("max_unpool2d", a.input())?;
    if a.input_ops.get(1) != Some(&"maxpool2d") {
        return Err(Diagnostic::new(format!(
            "the second input of max_unpool2d must be the max-pool whose indices it uses, not a {}",
            a.input_ops.get(1).copied().unwrap_or("missing input")
        ))
        .at(&a.node_path)
        .help("write `in: [x, pool1]`, naming the `maxpool` layer being undone"));
    }
    if a.inputs[1] != a.inputs[0] {
        return Err(Diagnostic::new(format!(
            "max_unpool2d input is {} but its paired max-pool produced {}",
            a.inputs[0], a.inputs[1]
        ))
        .at(&a.node_path));
    }
    let kernel = a.req_pair("kernel", "2")?;
    let stride = a.pair("stride")?.unwrap_or(kernel);
    let pad = a.pair0("padding")?.unwrap_or([0, 0]);
    let size = a.pair("size")?;
    Ok(Box::new(Unpool {
        kernel,
        stride,
        pad,
        size,
    }))
}

impl Layer for Unpool {
    fn op(&self) -> &'static str {
        "max_unpool2d"
    }
    fn label(&self) -> String {
        format!(
            "unpool {}×{}/{}",
            self.kernel[0],
            self.kernel[1],
            pair_label(self.stride)
        )
    }
    fn category(&self) -> Category {
        Category::Resample
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        let mut hw = [0; 2];
        for ax in 0..2 {
            // PyTorch: (in - 1)·stride - 2·padding + kernel.
            let grown = (s[2 + ax] - 1)
                .checked_mul(self.stride[ax])
                .and_then(|v| v.checked_add(self.kernel[ax]))
                .ok_or_else(|| Diagnostic::new("unpooled size overflows"))?;
            let default = grown
                .checked_sub(2 * self.pad[ax])
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    Diagnostic::new(format!(
                        "padding {} removes the whole unpooled output",
                        self.pad[ax]
                    ))
                })?;
            hw[ax] = match self.size {
                None => default,
                Some(sz) if sz[ax] >= default && sz[ax] < default + self.stride[ax] => sz[ax],
                Some(sz) => {
                    return Err(Diagnostic::new(format!(
                        "max_unpool2d size {} is outside the possible range {}..{}",
                        sz[ax],
                        default,
                        default + self.stride[ax] - 1
                    ))
                    .help("give the size of the tensor that entered the paired max-pool"))
                }
            };
        }
        Ok(vec![Shape(vec![s[0], s[1], hw[0], hw[1]])])
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Transposed {
            kernel: self.kernel,
            stride: self.stride,
            pad_begin: self.pad,
            dilation: [1, 1],
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("MaxUnpool2d")
    }
    fn training(
        &self,
        _inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // Backward gathers the gradient at the pooling indices (kept by the paired max-pool).
        Ok(Training {
            backward_flops: if input_grad { outputs[0].numel()? } else { 0 },
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::build;

    #[test]
    fn upsample_conventions_measured() {
        // ×2 on 2×8×10×10 → 6400 outputs (measured; ptflops at batch 1, doubled here).
        use crate::convention::Convention::*;
        use crate::layers::Shape;
        let x = Shape(vec![2, 8, 10, 10]);
        for (mode, want) in [
            ("nearest", [6400, 2 * 6400, 6400, 0]),
            ("bilinear", [25600, 2 * 6400, 70400, 0]),
            ("bicubic", [0, 2 * 6400, 1657600, 0]),
        ] {
            let (l, y) =
                build("upsample", &format!("{{scale: 2, mode: {mode}}}"), &[&x.0]).unwrap();
            let got: Vec<u64> = [Fvcore, Ptflops, Thop, Torchinfo]
                .iter()
                .map(|&c| l.convention_cost(c, std::slice::from_ref(&x), &y).unwrap())
                .collect();
            assert_eq!(got, want.to_vec(), "{mode}");
        }
    }

    #[test]
    fn upsample_shapes() {
        let (_, o) = build("upsample", "{scale: 2}", &[&[1, 8, 7, 7]]).unwrap();
        assert_eq!(o[0].0, vec![1, 8, 14, 14]);
        let (_, o) = build(
            "upsample",
            "{size: [10, 12], mode: bilinear, align_corners: true}",
            &[&[1, 8, 7, 7]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 8, 10, 12]);
        assert!(build(
            "upsample",
            "{scale: 2, align_corners: true}",
            &[&[1, 8, 7, 7]]
        )
        .is_err());
        assert!(build("upsample", "{}", &[&[1, 8, 7, 7]]).is_err());
    }
}
