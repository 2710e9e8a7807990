//! Pooling over one or three spatial axes (`maxpool1d/3d`, `avgpool1d/3d`,
//! `adaptive_avgpool1d/3d`, `adaptive_maxpool1d/3d`) with PyTorch's options: padding,
//! dilation (max), ceil_mode, count_include_pad and divisor_override (average); per-axis keys
//! take one number or a list of one per axis. The kernels are [`crate::kernels_nd`]'s.

use super::conv_nd::{axes_of, need_rank, req_axes};
use super::{
    mul, Arity, AttrDefault, Attrs, Category, Collapsed, Convention, Cost, Counting, Geometry,
    Kernel, Layer, Op, OpType, Shape, Training, Window,
};
use crate::error::Diagnostic;
use crate::geometry::{adaptive_window_sum, axis_name, pool_out, Axes};
use crate::kernels::Ctx;
use crate::kernels_nd::{adaptive_pool_nd, avg_pool_nd, lift, max_pool_nd, WindowNd};
use crate::tensor::Tensor;
use rayon::prelude::*;

const MAX_KEYS: &[&str] = &[
    "kernel",
    "stride",
    "padding",
    "dilation",
    "ceil",
    "functional",
];
/// AvgPool1d has no `divisor_override` (PyTorch).
const AVG1_KEYS: &[&str] = &[
    "kernel",
    "stride",
    "padding",
    "ceil",
    "count_include_pad",
    "functional",
];
const AVG3_KEYS: &[&str] = &[
    "kernel",
    "stride",
    "padding",
    "ceil",
    "count_include_pad",
    "divisor_override",
    "functional",
];

const MAX_DEFAULTS: &[(&str, AttrDefault)] = &[
    ("kernel", AttrDefault::Axes(None)),
    ("stride", AttrDefault::AxesOf("kernel")),
    ("padding", AttrDefault::Axes(Some(0))),
    ("dilation", AttrDefault::Axes(Some(1))),
    ("ceil", AttrDefault::Bool(false)),
    ("functional", AttrDefault::Bool(false)),
];
const AVG_DEFAULTS: &[(&str, AttrDefault)] = &[
    ("kernel", AttrDefault::Axes(None)),
    ("stride", AttrDefault::AxesOf("kernel")),
    ("padding", AttrDefault::Axes(Some(0))),
    ("ceil", AttrDefault::Bool(false)),
    ("count_include_pad", AttrDefault::Bool(true)),
    ("functional", AttrDefault::Bool(false)),
];
const ADAPTIVE_DEFAULTS: &[(&str, AttrDefault)] = &[
    ("size", AttrDefault::Axes(None)),
    ("functional", AttrDefault::Bool(false)),
];

macro_rules! pool_type {
    ($konst:ident, $name:literal, $keys:expr, $defaults:expr, $build:ident, $summary:literal) => {
        pub const $konst: OpType = OpType {
            name: $name,
            aliases: &[],
            keys: $keys,
            arity: Arity::Exactly(1),
            fused_bn: None,
            defaults: $defaults,
            build: $build,
            summary: $summary,
        };
    };
}

pool_type!(
    MAXPOOL1D,
    "maxpool1d",
    MAX_KEYS,
    MAX_DEFAULTS,
    build_max1,
    "max pooling (torch.nn.MaxPool1d) on N×C×L"
);
pool_type!(
    MAXPOOL3D,
    "maxpool3d",
    MAX_KEYS,
    MAX_DEFAULTS,
    build_max3,
    "max pooling (torch.nn.MaxPool3d) on N×C×D×H×W"
);
pool_type!(
    AVGPOOL1D,
    "avgpool1d",
    AVG1_KEYS,
    AVG_DEFAULTS,
    build_avg1,
    "average pooling (torch.nn.AvgPool1d) on N×C×L"
);
pool_type!(
    AVGPOOL3D,
    "avgpool3d",
    AVG3_KEYS,
    AVG_DEFAULTS,
    build_avg3,
    "average pooling (torch.nn.AvgPool3d) on N×C×D×H×W"
);
pool_type!(
    ADAPTIVE_AVGPOOL1D,
    "adaptive_avgpool1d",
    &["size", "functional"],
    ADAPTIVE_DEFAULTS,
    build_aavg1,
    "adaptive average pooling to a fixed length (torch.nn.AdaptiveAvgPool1d)"
);
pool_type!(
    ADAPTIVE_AVGPOOL3D,
    "adaptive_avgpool3d",
    &["size", "functional"],
    ADAPTIVE_DEFAULTS,
    build_aavg3,
    "adaptive average pooling to a fixed D×H×W (torch.nn.AdaptiveAvgPool3d)"
);
pool_type!(
    ADAPTIVE_MAXPOOL1D,
    "adaptive_maxpool1d",
    &["size", "functional"],
    ADAPTIVE_DEFAULTS,
    build_amax1,
    "adaptive max pooling to a fixed length (torch.nn.AdaptiveMaxPool1d)"
);
pool_type!(
    ADAPTIVE_MAXPOOL3D,
    "adaptive_maxpool3d",
    &["size", "functional"],
    ADAPTIVE_DEFAULTS,
    build_amax3,
    "adaptive max pooling to a fixed D×H×W (torch.nn.AdaptiveMaxPool3d)"
);

fn build_max1(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_pool(a, 1, true)
}
fn build_max3(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_pool(a, 3, true)
}
fn build_avg1(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_pool(a, 1, false)
}
fn build_avg3(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_pool(a, 3, false)
}
fn build_aavg1(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, 1, false)
}
fn build_aavg3(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, 3, false)
}
fn build_amax1(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, 1, true)
}
fn build_amax3(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, 3, true)
}

/// Max or average pooling over `kernel.rank()` axes.
#[derive(Debug, Clone)]
struct PoolNd {
    max: bool,
    kernel: Axes,
    stride: Axes,
    pad: Axes,
    dilation: Axes,
    ceil: bool,
    count_include_pad: bool,
    divisor_override: Option<u64>,
    /// The model calls `F.max_pool{1,3}d` / `F.avg_pool{1,3}d` rather than a module.
    functional: bool,
}

fn build_pool(a: &mut Attrs, rank: usize, max: bool) -> Result<Box<dyn Layer>, Diagnostic> {
    need_rank(a.op, a.input(), rank)?;
    let example = if rank == 1 { "2" } else { "[1, 2, 2]" };
    let kernel = req_axes(a, "kernel", rank, example)?;
    let stride = axes_of(a, "stride", rank, 1)?.unwrap_or(kernel);
    if let Some(v) = a.raw("padding")? {
        if let crate::yaml::YValue::Str(s) = &v.value {
            return Err(Diagnostic::new(format!(
                "`padding: {s}` is a convolution's option; {} takes padding as a number or one per axis",
                a.op
            ))
            .at(&v.path)
            .help("write `padding: 0` (valid) or the padding of each axis, at most half the window"));
        }
    }
    let pad = axes_of(a, "padding", rank, 0)?.unwrap_or(Axes::splat(rank, 0));
    let dilation = if max {
        axes_of(a, "dilation", rank, 1)?.unwrap_or(Axes::splat(rank, 1))
    } else {
        Axes::splat(rank, 1)
    };
    let ceil = a.bool("ceil", false)?;
    let (count_include_pad, divisor_override) = if max {
        (true, None)
    } else {
        (
            a.bool("count_include_pad", true)?,
            if rank == 3 {
                a.positive("divisor_override")?
            } else {
                None
            },
        )
    };
    let functional = a.bool("functional", false)?;
    Ok(Box::new(PoolNd {
        max,
        kernel,
        stride,
        pad,
        dilation,
        ceil,
        count_include_pad,
        divisor_override,
        functional,
    }))
}

impl PoolNd {
    fn rank(&self) -> usize {
        self.kernel.rank()
    }
}

impl Op for PoolNd {
    fn op(&self) -> &'static str {
        match (self.max, self.rank()) {
            (true, 1) => "maxpool1d",
            (true, _) => "maxpool3d",
            (false, 1) => "avgpool1d",
            (false, _) => "avgpool3d",
        }
    }
    fn label(&self) -> String {
        let mut s = format!(
            "{} {}",
            if self.max { "maxpool" } else { "avgpool" },
            self.kernel.dims()
        );
        if !self.stride.all(1) {
            s += &format!("/{}", self.stride.label());
        }
        if !self.pad.all(0) {
            s += &format!(" p{}", self.pad.label());
        }
        if !self.dilation.all(1) {
            s += &format!(" d{}", self.dilation.label());
        }
        if self.ceil {
            s += " ceil";
        }
        if !self.count_include_pad {
            s += " excl-pad";
        }
        if let Some(d) = self.divisor_override {
            s += &format!(" ÷{d}");
        }
        s
    }
    fn category(&self) -> Category {
        Category::Pooling
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        need_rank(self.op(), &inputs[0], self.rank())?;
        let s = &inputs[0].0;
        let mut out = vec![s[0], s[1]];
        for ax in 0..self.rank() {
            out.push(
                pool_out(
                    s[2 + ax],
                    self.kernel[ax],
                    self.stride[ax],
                    self.pad[ax],
                    self.dilation[ax],
                    self.ceil,
                )
                .map_err(|m| {
                    Diagnostic::new(format!(
                        "{} on a {} input, along the {}: {m}",
                        self.op(),
                        Shape(s[2..].to_vec()),
                        axis_name(self.rank(), ax)
                    ))
                    .help("use a smaller window or padding, or check the input size (--input)")
                })?,
            );
        }
        Ok(vec![Shape(out)])
    }
    fn cost(&self, _inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Max: window−1 comparisons per output; average: window−1 adds and one division.
        let window: u64 = self.kernel.iter().product();
        let per = if self.max { window - 1 } else { window };
        Ok(Cost {
            macs: 0,
            flops: mul(&[outputs[0].numel()?, per])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Window {
            kernel: self.kernel,
            stride: self.stride,
            pad_begin: self.pad,
            dilation: self.dilation,
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        (!self.functional).then_some(match (self.max, self.rank()) {
            (true, 1) => "MaxPool1d",
            (true, _) => "MaxPool3d",
            (false, 1) => "AvgPool1d",
            (false, _) => "AvgPool3d",
        })
    }
    fn window(&self) -> Option<Window> {
        Some(Window {
            kernel: self.kernel,
            stride: self.stride,
            pad_begin: self.pad,
            pad_end: self.pad,
            dilation: self.dilation,
            ceil: self.ceil,
        })
    }
}

impl Kernel for PoolNd {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        super::onnx::pool(
            e,
            &super::onnx::PoolForm {
                max: self.max,
                kernel: &self.kernel,
                stride: &self.stride,
                pad: &self.pad,
                dilation: &self.dilation,
                ceil: self.ceil,
                count_include_pad: self.count_include_pad,
                divisor_override: self.divisor_override,
            },
        )
    }
    fn collapsed(&self) -> Collapsed {
        // Per channel already: the same pooling on one channel (max and average pooling have
        // the same support on non-negative inputs).
        Collapsed::Layer(Box::new(self.clone()))
    }
    /// A max pool's argmax indices (one u32, as many bytes as an f32, per output element),
    /// computed when `ctx.want_aux` asks for them (`check`, which runs without the plan).
    fn workspace(&self, _inputs: &[Shape], outputs: &[Shape]) -> u64 {
        match outputs.first() {
            Some(y) if self.max => y.numel().unwrap_or(u64::MAX),
            _ => 0,
        }
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let win = WindowNd::new(
            &self.kernel.to_usize(),
            &self.stride.to_usize(),
            &self.pad.to_usize(),
            &self.dilation.to_usize(),
            &x.shape[2..],
            &dims[2..],
        );
        let (ivol, ovol) = (win.input_len(), win.output_len().max(1));
        let mut out = ctx.output(&dims);
        if self.max {
            if ctx.want_aux {
                let mut idx = vec![0u32; out.numel()];
                out.data
                    .par_chunks_mut(ovol)
                    .zip(idx.par_chunks_mut(ovol))
                    .enumerate()
                    .for_each(|(bc, (dst, ids))| {
                        max_pool_nd(&x.data[bc * ivol..(bc + 1) * ivol], dst, Some(ids), &win)
                    });
                ctx.aux_out = Some(idx);
            } else {
                out.data
                    .par_chunks_mut(ovol)
                    .enumerate()
                    .for_each(|(bc, dst)| {
                        max_pool_nd(&x.data[bc * ivol..(bc + 1) * ivol], dst, None, &win)
                    });
            }
        } else {
            let (cip, div) = (self.count_include_pad, self.divisor_override);
            out.data
                .par_chunks_mut(ovol)
                .enumerate()
                .for_each(|(bc, dst)| {
                    avg_pool_nd(&x.data[bc * ivol..(bc + 1) * ivol], dst, &win, cip, div)
                });
        }
        Ok(vec![out])
    }
}

impl Counting for PoolNd {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        super::pool::window_pool_convention(self.max, self.functional, c, inputs, outputs)
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        super::pool::window_pool_training(
            self.max,
            self.cost(inputs, outputs)?,
            outputs,
            input_grad,
        )
    }
}

/// Adaptive max or average pooling to a fixed size over one or three axes.
#[derive(Debug, Clone)]
struct AdaptiveNd {
    max: bool,
    size: Axes,
    functional: bool,
}

fn build_adaptive(a: &mut Attrs, rank: usize, max: bool) -> Result<Box<dyn Layer>, Diagnostic> {
    need_rank(a.op, a.input(), rank)?;
    let example = if rank == 1 { "1" } else { "[1, 1, 1]" };
    let size = req_axes(a, "size", rank, example)?;
    let functional = a.bool("functional", false)?;
    Ok(Box::new(AdaptiveNd {
        max,
        size,
        functional,
    }))
}

impl Op for AdaptiveNd {
    fn op(&self) -> &'static str {
        match (self.max, self.size.rank()) {
            (false, 1) => "adaptive_avgpool1d",
            (false, _) => "adaptive_avgpool3d",
            (true, 1) => "adaptive_maxpool1d",
            (true, _) => "adaptive_maxpool3d",
        }
    }
    fn label(&self) -> String {
        let kind = if self.max { "max" } else { "avg" };
        format!("adaptive {kind}pool → {}", self.size.dims())
    }
    fn category(&self) -> Category {
        Category::Pooling
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        need_rank(self.op(), &inputs[0], self.size.rank())?;
        let s = &inputs[0].0;
        let mut out = vec![s[0], s[1]];
        out.extend(self.size.iter());
        Ok(vec![Shape(out)])
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Exact: the sum over output positions of each window's volume (windows may overlap).
        let (x, y) = (&inputs[0].0, &outputs[0].0);
        let mut f = vec![x[0], x[1]];
        for ax in 0..self.size.rank() {
            f.push(adaptive_window_sum(y[2 + ax], x[2 + ax]));
        }
        let reads = mul(&f)?;
        let outs = outputs[0].numel()?;
        Ok(Cost {
            macs: 0,
            flops: if self.max { reads - outs } else { reads },
        })
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        let x = &inputs[0].0[2..];
        // Windows that tile the input evenly are an ordinary window; otherwise (or to one
        // unit from more) the field is taken as global, as the 2-D adaptive pools.
        if x.iter()
            .zip(self.size.iter())
            .all(|(&i, &o)| i.is_multiple_of(o))
        {
            let k = Axes::new(
                &x.iter()
                    .zip(self.size.iter())
                    .map(|(&i, &o)| i / o)
                    .collect::<Vec<_>>(),
            )
            .expect("rank 1 or 3");
            if k.all(1) {
                Geometry::Pointwise
            } else {
                Geometry::Window {
                    kernel: k,
                    stride: k,
                    pad_begin: Axes::splat(k.rank(), 0),
                    dilation: Axes::splat(k.rank(), 1),
                }
            }
        } else {
            Geometry::Global
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        (!self.functional).then_some(match (self.max, self.size.rank()) {
            (false, 1) => "AdaptiveAvgPool1d",
            (false, _) => "AdaptiveAvgPool3d",
            (true, 1) => "AdaptiveMaxPool1d",
            (true, _) => "AdaptiveMaxPool3d",
        })
    }
}

impl Kernel for AdaptiveNd {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        super::onnx::adaptive(e, self.max, &self.size)
    }
    fn collapsed(&self) -> Collapsed {
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
        let (i3, o3) = (lift(&x.shape[2..], 1), lift(&dims[2..], 1));
        let (ivol, ovol) = (i3.iter().product::<usize>(), o3.iter().product::<usize>());
        let mut out = Tensor::zeros(&dims);
        let max = self.max;
        out.data
            .par_chunks_mut(ovol.max(1))
            .enumerate()
            .for_each(|(bc, dst)| {
                adaptive_pool_nd(&x.data[bc * ivol..(bc + 1) * ivol], dst, i3, o3, max)
            });
        Ok(vec![out])
    }
}

impl Counting for AdaptiveNd {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let (x, y) = (&inputs[0], &outputs[0]);
        match (c, self.max) {
            // ptflops: numel(input), twice (module hook + patched functional); once for a
            // functional call.
            (Convention::Ptflops, _) => mul(&[2 - u64::from(self.functional), x.numel()?]),
            // thop (modules only): (prod(in/out) + 1) · numel(output) in float64, truncated;
            // 0 for max.
            (Convention::Thop, false) if !self.functional => {
                let k: f64 = x.0[2..]
                    .iter()
                    .zip(&y.0[2..])
                    .map(|(&i, &o)| i as f64 / o as f64)
                    .product();
                Ok(((k + 1.0) * y.numel()? as f64) as u64)
            }
            // fvcore has a rule for aten::adaptive_avg_pool2d only.
            _ => Ok(0),
        }
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        super::pool::adaptive_pool_training(
            self.max,
            self.cost(inputs, outputs)?,
            outputs,
            input_grad,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;
    use crate::layers::Shape;

    #[test]
    fn sizes_and_costs() {
        // MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) on 1×64×16×56×56 → 1×64×16×28×28.
        let (l, o) = build(
            "maxpool3d",
            "{kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1]}",
            &[&[1, 64, 16, 56, 56]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 64, 16, 28, 28]);
        assert_eq!(l.label(), "maxpool 1×3×3/1×2×2 p0×1×1");
        // 8 comparisons per output.
        assert_eq!(
            l.cost(&[Shape(vec![1, 64, 16, 56, 56])], &o).unwrap().flops,
            64 * 16 * 28 * 28 * 8
        );
        // AvgPool1d(3, 2, ceil_mode) on 10 → ⌈(10 − 3)/2⌉ + 1 = 5.
        let (_, o) = build(
            "avgpool1d",
            "{kernel: 3, stride: 2, ceil: true}",
            &[&[2, 4, 10]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![2, 4, 5]);
        // AdaptiveAvgPool3d(1) on 1×512×2×7×7: 512·98 reads (FLOPs).
        let (l, o) = build("adaptive_avgpool3d", "{size: 1}", &[&[1, 512, 2, 7, 7]]).unwrap();
        assert_eq!(o[0].0, vec![1, 512, 1, 1, 1]);
        assert_eq!(
            l.cost(&[Shape(vec![1, 512, 2, 7, 7])], &o).unwrap().flops,
            512 * 98
        );
        // Padding more than half the window is refused (PyTorch's rule).
        let e = build("maxpool1d", "{kernel: 2, padding: 2}", &[&[1, 1, 8]]).unwrap_err();
        assert!(e.message.contains("more than half"), "{e}");
    }
}
