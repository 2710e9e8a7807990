//! Resampling up: interpolation (nearest, linear, bilinear, bicubic, trilinear; by scale or to
//! a size, over one, two or three spatial axes) and max-unpooling with the indices of its
//! paired max-pool.

use super::Convention;
use super::{
    mul, need_4d, pair_label, per_element, Arity, AttrDefault, Attrs, Axes, Category, Collapsed,
    Cost, Counting, Geometry, Kernel, Layer, Op, OpType, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::Tensor;
use rayon::prelude::*;

pub const UPSAMPLE: OpType = OpType {
    name: "upsample",
    aliases: &["interpolate", "resize"],
    keys: &["mode", "scale", "size", "align_corners", "functional"],
    arity: Arity::AtLeast(1),
    fused_bn: None,
    defaults: &[
        ("mode", AttrDefault::Word("nearest")),
        ("scale", AttrDefault::Axes(None)),
        ("size", AttrDefault::Axes(None)),
        ("align_corners", AttrDefault::Bool(false)),
        ("functional", AttrDefault::Bool(false)),
    ],
    build: build_upsample,
    summary: "interpolation by an integer `scale`, to a `size`, or to the size of a second input `in: [x, like]` (torch.nn.Upsample)",
};

pub const MAX_UNPOOL2D: OpType = OpType {
    name: "max_unpool2d",
    aliases: &["unpool", "maxunpool"],
    keys: &["kernel", "stride", "padding", "size"],
    arity: Arity::Exactly(2),
    fused_bn: None,
    defaults: &[
        ("kernel", AttrDefault::Axes(None)),
        ("stride", AttrDefault::AxesOf("kernel")),
        ("padding", AttrDefault::Axes(Some(0))),
        ("size", AttrDefault::Axes(None)),
    ],
    build: build_unpool,
    summary: "max-unpooling: `in: [x, pool]` where `pool` is the max-pool whose indices it uses (torch.nn.MaxUnpool2d)",
};

/// PyTorch's interpolation `mode`, parsed once when the layer is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interp {
    Nearest,
    NearestExact,
    Linear,
    Bilinear,
    Bicubic,
    Trilinear,
}

/// The words of `mode:` and the [`Interp`] each names.
const INTERP_MODES: [(&str, Interp); 6] = [
    ("nearest", Interp::Nearest),
    ("nearest_exact", Interp::NearestExact),
    ("linear", Interp::Linear),
    ("bilinear", Interp::Bilinear),
    ("bicubic", Interp::Bicubic),
    ("trilinear", Interp::Trilinear),
];

impl Interp {
    /// The word written in `mode:`.
    fn name(self) -> &'static str {
        INTERP_MODES
            .iter()
            .find(|&&(_, m)| m == self)
            .map_or("nearest", |&(w, _)| w)
    }
    /// The spatial rank an interpolating mode requires (PyTorch's rule) and that input's
    /// form; None for the nearest modes, which take any rank.
    fn rank(self) -> Option<(usize, &'static str)> {
        match self {
            Interp::Linear => Some((1, "N×C×L")),
            Interp::Bilinear | Interp::Bicubic => Some((2, "N×C×H×W")),
            Interp::Trilinear => Some((3, "N×C×D×H×W")),
            Interp::Nearest | Interp::NearestExact => None,
        }
    }
    /// Whether it weighs neighbours (and so takes `align_corners`).
    fn interpolating(self) -> bool {
        self.rank().is_some()
    }
}

impl std::fmt::Display for Interp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone)]
struct Upsample {
    mode: Interp,
    /// Per spatial axis (one, two or three).
    scale: Option<Axes>,
    size: Option<Axes>,
    align_corners: bool,
    /// The PyTorch model calls `F.interpolate` rather than an `nn.Upsample` module: same
    /// shapes and costs, seen differently by module-hooking profilers (docs/COUNTING.md).
    functional: bool,
}

fn build_upsample(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    if !(3..=5).contains(&x.rank()) {
        need_4d("upsample", &x)?;
    }
    let rank = x.rank() - 2;
    let mode = super::conv_nd::mode_of(a, "mode", &INTERP_MODES, Interp::Nearest, "nearest")?;
    // PyTorch's rule: each interpolating mode has its rank.
    if let Some((r, dims)) = mode.rank().filter(|&(r, _)| r != rank) {
        let fit = match rank {
            1 => "linear",
            2 => "bilinear",
            _ => "trilinear",
        };
        let _ = r;
        return Err(a
            .error(
                "mode",
                format!("`mode: {mode}` needs an {dims} input, got {x}"),
            )
            .help(format!("on this input write `mode: {fit}` (or nearest)")));
    }
    // An image keeps the 2-D keys' messages; other ranks take one value per axis.
    let (scale, mut size) = if rank == 2 {
        (
            a.pair("scale")?.map(Axes::from),
            a.pair("size")?.map(Axes::from),
        )
    } else {
        (
            super::conv_nd::axes_of(a, "scale", rank, 1)?,
            super::conv_nd::axes_of(a, "size", rank, 1)?,
        )
    };
    match a.inputs.len() {
        1 => {}
        2 => {
            let like = &a.inputs[1];
            if like.rank() != x.rank() || scale.is_some() || size.is_some() {
                return Err(Diagnostic::new(format!(
                    "with two inputs, upsample takes the size of the second ({like}); it then needs neither `scale` nor `size`"
                ))
                .at(&a.node_path));
            }
            size = Axes::new(&like.0[2..]);
        }
        n => {
            return Err(Diagnostic::new(format!(
                "upsample takes one input, or two (`in: [x, like]`), not {n}"
            ))
            .at(&a.node_path))
        }
    }
    if scale.is_some() == size.is_some() {
        return Err(Diagnostic::new("upsample needs exactly one of `scale` and `size`")
            .at(&a.node_path)
            .help("e.g. `scale: 2`, `size: [28, 28]`, or `in: [x, like]` for the size of layer `like`"));
    }
    let interpolating = mode.interpolating();
    let align_corners = match a.raw("align_corners")? {
        Some(v) if !interpolating => {
            return Err(Diagnostic::new(format!(
                "align_corners only applies to linear, bilinear, bicubic and trilinear, not {mode}"
            ))
            .at(&v.path))
        }
        Some(_) => a.bool("align_corners", false)?,
        None => false,
    };
    let functional = a.bool("functional", false)?;
    Ok(Box::new(Upsample {
        mode,
        scale,
        size,
        align_corners,
        functional,
    }))
}

impl Op for Upsample {
    fn op(&self) -> &'static str {
        "upsample"
    }
    fn label(&self) -> String {
        match (self.scale, self.size) {
            (Some(s), _) => format!("upsample ×{} {}", s.label(), self.mode),
            (_, Some(s)) => format!("upsample → {} {}", s.dims(), self.mode),
            _ => "upsample".into(),
        }
    }
    fn reads_values(&self, index: usize) -> bool {
        // A second input only lends its size.
        index == 0
    }
    fn category(&self) -> Category {
        Category::Resample
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        let mut out = vec![s[0], s[1]];
        for ax in 0..s.len().saturating_sub(2) {
            out.push(match (self.scale, self.size) {
                (Some(k), _) => mul(&[s[2 + ax], k[ax]])?,
                (_, Some(sz)) => sz[ax],
                _ => s[2 + ax],
            });
        }
        Ok(vec![Shape(out)])
    }
    fn cost(&self, _inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Nearest copies; linear weighs 2 neighbours (2 multiplies + 1 add), bilinear 4 (4 + 3),
        // trilinear 8 (8 + 7), bicubic 16 (31).
        let per = match self.mode {
            Interp::Linear => 3,
            Interp::Bilinear => 7,
            Interp::Trilinear => 15,
            Interp::Bicubic => 31,
            Interp::Nearest | Interp::NearestExact => 0,
        };
        Ok(Cost {
            macs: 0,
            flops: per_element(&outputs[0], per)?,
        })
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        let s = &inputs[0].0;
        let den = Axes::new(&s[2..]).unwrap_or(Axes::splat(1, 1));
        let mut num = den;
        for ax in 0..den.rank() {
            num[ax] = match (self.scale, self.size) {
                (Some(k), _) => den[ax].saturating_mul(k[ax]),
                (_, Some(sz)) => sz[ax],
                _ => den[ax],
            };
        }
        Geometry::Resize {
            num,
            den,
            taps: match self.mode {
                Interp::Linear | Interp::Bilinear | Interp::Trilinear => 2,
                Interp::Bicubic => 4,
                Interp::Nearest | Interp::NearestExact => 1,
            },
            align_corners: self.align_corners,
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        (!self.functional).then_some("Upsample")
    }
}

impl Kernel for Upsample {
    /// `Resize` with the coordinate rule PyTorch uses for the mode: nearest `asymmetric` +
    /// `floor`, nearest-exact `half_pixel` + `round_prefer_ceil`, (bi/tri)linear and bicubic
    /// (A = −0.75) `pytorch_half_pixel` or `align_corners`. A scale goes as `scales` (so the
    /// coordinates use 1/scale, as PyTorch does), a size as `sizes`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::{float, string};
        let (x, out) = (e.input(0), e.output(0));
        let coord = if self.align_corners {
            "align_corners"
        } else {
            "pytorch_half_pixel"
        };
        let mut attrs = match self.mode {
            Interp::Nearest => vec![
                string("mode", "nearest"),
                string("coordinate_transformation_mode", "asymmetric"),
                string("nearest_mode", "floor"),
            ],
            Interp::NearestExact => vec![
                string("mode", "nearest"),
                string("coordinate_transformation_mode", "half_pixel"),
                string("nearest_mode", "round_prefer_ceil"),
            ],
            Interp::Linear | Interp::Bilinear | Interp::Trilinear => vec![
                string("mode", "linear"),
                string("coordinate_transformation_mode", coord),
            ],
            Interp::Bicubic => vec![
                string("mode", "cubic"),
                string("coordinate_transformation_mode", coord),
                float("cubic_coeff_a", -0.75),
            ],
        };
        attrs.shrink_to_fit();
        match self.scale {
            Some(s) => {
                let mut v = vec![1.0f32, 1.0];
                v.extend(s.iter().map(|&k| k as f32));
                let sc = e.floats("scales", &[v.len() as i64], v);
                e.node("Resize", &[&x, "", &sc], &[&out], attrs);
            }
            None => {
                let shape = e.out_dims(0);
                let sz = e.ints("sizes", &shape);
                e.node("Resize", &[&x, "", "", &sz], &[&out], attrs);
            }
        }
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // Per channel already: the same interpolation on one channel (a second input only
        // lends its size).
        Collapsed::Layer(Box::new(self.clone()))
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let (h, w, oh, ow) = (
            x.shape.get(2).copied().unwrap_or(1),
            x.shape.get(3).copied().unwrap_or(1),
            dims.get(2).copied().unwrap_or(1),
            dims.get(3).copied().unwrap_or(1),
        );
        // PyTorch uses 1/scale_factor when a scale is given, in/out otherwise.
        let ratio = |axis: usize, i: usize, o: usize| match self.scale {
            Some(s) => 1.0 / s[axis] as f64,
            None => i as f64 / o as f64,
        };
        let taps = |axis: usize, i: usize, o: usize| -> Vec<Vec<(usize, f32)>> {
            let r = ratio(axis, i, o);
            (0..o)
                .map(|j| match self.mode {
                    Interp::Nearest => vec![(((j as f64 * r).floor() as usize).min(i - 1), 1.0)],
                    Interp::NearestExact => {
                        vec![((((j as f64 + 0.5) * r).floor()) as usize).min(i - 1)]
                            .into_iter()
                            .map(|k| (k, 1.0))
                            .collect()
                    }
                    Interp::Bilinear | Interp::Linear | Interp::Trilinear => {
                        let src = if self.align_corners {
                            if o > 1 {
                                j as f64 * (i - 1) as f64 / (o - 1) as f64
                            } else {
                                0.0
                            }
                        } else {
                            ((j as f64 + 0.5) * r - 0.5).max(0.0)
                        };
                        let i0 = (src.floor() as usize).min(i - 1);
                        let i1 = (i0 + 1).min(i - 1);
                        let l1 = (src - i0 as f64) as f32;
                        vec![(i0, 1.0 - l1), (i1, l1)]
                    }
                    Interp::Bicubic => {
                        // Bicubic: cubic convolution with A = −0.75, clamped indices (PyTorch).
                        let src = if self.align_corners {
                            if o > 1 {
                                j as f64 * (i - 1) as f64 / (o - 1) as f64
                            } else {
                                0.0
                            }
                        } else {
                            (j as f64 + 0.5) * r - 0.5
                        };
                        let f = src.floor();
                        let t = (src - f) as f32;
                        let a = -0.75f32;
                        let near = |d: f32| ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
                        let far = |d: f32| ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
                        let wts = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
                        (0..4)
                            .map(|k| {
                                (
                                    (f as isize - 1 + k as isize).clamp(0, i as isize - 1) as usize,
                                    wts[k],
                                )
                            })
                            .collect()
                    }
                })
                .collect()
        };
        if x.shape.len() != 4 {
            // One or three spatial axes: separable taps per axis (a missing leading axis is
            // one unit with weight 1).
            let rank = x.shape.len() - 2;
            let one = || vec![vec![(0usize, 1.0f32)]];
            let mut t3 = [one(), one(), one()];
            for ax in 0..rank {
                t3[3 - rank + ax] = taps(ax, x.shape[2 + ax], dims[2 + ax]);
            }
            let (i3, o3) = (
                crate::kernels_nd::lift(&x.shape[2..], 1),
                crate::kernels_nd::lift(&dims[2..], 1),
            );
            let (ivol, ovol) = (i3.iter().product::<usize>(), o3.iter().product::<usize>());
            let mut out = Tensor::zeros(&dims);
            out.data
                .par_chunks_mut(ovol.max(1))
                .enumerate()
                .for_each(|(bc, dst)| {
                    crate::kernels_nd::interpolate_nd(
                        &x.data[bc * ivol..(bc + 1) * ivol],
                        dst,
                        i3,
                        o3,
                        &t3,
                    )
                });
            return Ok(vec![out]);
        }
        let (ty, tx) = (taps(0, h, oh), taps(1, w, ow));
        let mut out = Tensor::zeros(&dims);
        out.data
            .par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(bc, dst)| {
                let src = &x.data[bc * h * w..(bc + 1) * h * w];
                for (oy, ry) in ty.iter().enumerate() {
                    for (ox, rx) in tx.iter().enumerate() {
                        let mut acc = 0.0f32;
                        for &(iy, wy) in ry {
                            for &(ix, wx) in rx {
                                acc += wy * wx * src[iy * w + ix];
                            }
                        }
                        dst[oy * ow + ox] = acc;
                    }
                }
            });
        Ok(vec![out])
    }
}

impl Counting for Upsample {
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
            (Convention::Fvcore, Interp::Nearest) if y.rank() == 4 => 1,
            (Convention::Fvcore, Interp::Bilinear) => 4,
            // ptflops: numel(output) in the module hook, again in the patched F.interpolate
            // (once for a functional call).
            (Convention::Ptflops, _) => 2 - u64::from(self.functional),
            // thop (modules only): nearest 1, bilinear 11, bicubic 259 per output;
            // "nearest-exact" unknown.
            (Convention::Thop, _) if self.functional => 0,
            // linear 5 (trilinear: not in count_upsample's list, 0).
            (Convention::Thop, Interp::Nearest) => 1,
            (Convention::Thop, Interp::Linear) => 5,
            (Convention::Thop, Interp::Bilinear) => 11,
            (Convention::Thop, Interp::Bicubic) => 259,
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

impl Op for Unpool {
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
            kernel: self.kernel.into(),
            stride: self.stride.into(),
            pad_begin: self.pad.into(),
            dilation: [1, 1].into(),
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("MaxUnpool2d")
    }
}

impl Kernel for Unpool {
    fn collapsed(&self) -> Collapsed {
        // Where each value lands depends on the paired max-pool's data: not measured.
        Collapsed::Stop
    }
    fn reads_aux(&self) -> bool {
        true
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let idx = ctx.aux_in.get(1).copied().flatten().ok_or_else(|| {
            Diagnostic::new(
                "max_unpool2d needs the indices of its paired max-pool, which did not record any",
            )
        })?;
        let plane = dims[2] * dims[3];
        let inplane = x.shape[2] * x.shape[3];
        let mut out = Tensor::zeros(&dims);
        for bc in 0..x.shape[0] * x.shape[1] {
            for p in 0..inplane {
                let at = idx[bc * inplane + p] as usize;
                if at >= plane {
                    return Err(Diagnostic::new(format!(
                        "a max-pool index ({at}) falls outside the unpooled {}×{} plane",
                        dims[2], dims[3]
                    ))
                    .help("give `size:` the size of the tensor that entered the paired max-pool"));
                }
                out.data[bc * plane + at] = x.data[bc * inplane + p];
            }
        }
        Ok(vec![out])
    }
}

impl Counting for Unpool {
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
    use crate::layers::testutil::build;

    #[test]
    fn upsample_conventions_measured() {
        // ×2 on 2×8×10×10 → 6400 outputs (measured; ptflops at batch 1, doubled here).
        use super::Convention::*;
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
        let e = build(
            "upsample",
            "{scale: 2, align_corners: true}",
            &[&[1, 8, 7, 7]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "align_corners only applies to linear, bilinear, bicubic and trilinear, not nearest"
        );
        let e = build("upsample", "{}", &[&[1, 8, 7, 7]]).unwrap_err();
        assert_eq!(
            e.message,
            "upsample needs exactly one of `scale` and `size`"
        );
    }
}
