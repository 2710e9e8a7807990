//! Pooling: max and average (padding, dilation, ceil_mode, count_include_pad, divisor_override),
//! adaptive max/average to a fixed output size, and global pooling.

use super::Convention;
use super::{
    mul, need_4d, pair_label, Arity, AttrDefault, Attrs, Category, Collapsed, Cost, Counting,
    Geometry, Kernel, Layer, Op, OpType, Saved, Shape, Training, Window,
};
use crate::error::Diagnostic;
use crate::geometry::adaptive_window;
use crate::geometry::{adaptive_window_sum, pool_out};
use crate::kernels::pooling;
use crate::kernels::vectorised;
use crate::kernels::Ctx;
use crate::tensor::Tensor;
use rayon::prelude::*;

pub const MAXPOOL2D: OpType = OpType {
    name: "maxpool2d",
    aliases: &["maxpool", "max_pool2d"],
    keys: &[
        "kernel",
        "stride",
        "padding",
        "dilation",
        "ceil",
        "functional",
    ],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("kernel", AttrDefault::Axes(None)),
        ("stride", AttrDefault::AxesOf("kernel")),
        ("padding", AttrDefault::Axes(Some(0))),
        ("dilation", AttrDefault::Axes(Some(1))),
        ("ceil", AttrDefault::Bool(false)),
        ("functional", AttrDefault::Bool(false)),
    ],
    build: build_max,
    summary: "max pooling (torch.nn.MaxPool2d)",
};

pub const AVGPOOL2D: OpType = OpType {
    name: "avgpool2d",
    aliases: &["avgpool", "avg_pool2d"],
    keys: &[
        "kernel",
        "stride",
        "padding",
        "ceil",
        "count_include_pad",
        "divisor_override",
        "functional",
    ],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("kernel", AttrDefault::Axes(None)),
        ("stride", AttrDefault::AxesOf("kernel")),
        ("padding", AttrDefault::Axes(Some(0))),
        ("ceil", AttrDefault::Bool(false)),
        ("count_include_pad", AttrDefault::Bool(true)),
        ("functional", AttrDefault::Bool(false)),
    ],
    build: build_avg,
    summary: "average pooling (torch.nn.AvgPool2d)",
};

pub const ADAPTIVE_AVGPOOL2D: OpType = OpType {
    name: "adaptive_avgpool2d",
    aliases: &["adaptive_avgpool"],
    keys: &["size", "functional"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("size", AttrDefault::Axes(None)),
        ("functional", AttrDefault::Bool(false)),
    ],
    build: build_adaptive_avg,
    summary: "adaptive average pooling to a fixed output size (torch.nn.AdaptiveAvgPool2d)",
};

pub const ADAPTIVE_MAXPOOL2D: OpType = OpType {
    name: "adaptive_maxpool2d",
    aliases: &["adaptive_maxpool"],
    keys: &["size", "functional"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("size", AttrDefault::Axes(None)),
        ("functional", AttrDefault::Bool(false)),
    ],
    build: build_adaptive_max,
    summary: "adaptive max pooling to a fixed output size (torch.nn.AdaptiveMaxPool2d)",
};

pub const GLOBAL_AVGPOOL: OpType = OpType {
    name: "global_avgpool",
    aliases: &["gap"],
    keys: &["functional"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("functional", AttrDefault::Bool(false))],
    build: build_global_avg,
    summary: "global average pooling to N×C×1×1 (AdaptiveAvgPool2d(1))",
};

pub const GLOBAL_MAXPOOL: OpType = OpType {
    name: "global_maxpool",
    aliases: &[],
    keys: &["functional"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("functional", AttrDefault::Bool(false))],
    build: build_global_max,
    summary: "global max pooling to N×C×1×1 (AdaptiveMaxPool2d(1))",
};

#[derive(Debug, Clone)]
struct Pool {
    max: bool,
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: [u64; 2],
    dilation: [u64; 2],
    ceil: bool,
    count_include_pad: bool,
    divisor_override: Option<u64>,
    /// The PyTorch model calls `F.max_pool2d` / `F.avg_pool2d` rather than a module: same
    /// shapes and costs, seen differently by module-hooking profilers (docs/COUNTING.md).
    functional: bool,
}

fn build_pool(a: &mut Attrs, max: bool) -> Result<Box<dyn Layer>, Diagnostic> {
    need_4d(a.op, a.input())?;
    let kernel = a.req_pair("kernel", "2")?;
    let stride = a.pair("stride")?.unwrap_or(kernel);
    // `same` and `valid` are a convolution's padding values; PyTorch's pools take numbers.
    if let Some(v) = a.raw("padding")? {
        if let crate::yaml::YValue::Str(s) = &v.value {
            let k = kernel;
            return Err(Diagnostic::new(format!(
                "`padding: {s}` is a convolution's option; {} takes padding as a number or [h, w]",
                a.op
            ))
            .at(&v.path)
            .help(if k[0] % 2 == 1 && k[1] % 2 == 1 {
                format!(
                    "for the same output size at stride 1, write `padding: {}` ((kernel − 1)/2); `valid` is `padding: 0`",
                    if k[0] == k[1] {
                        format!("{}", (k[0] - 1) / 2)
                    } else {
                        format!("[{}, {}]", (k[0] - 1) / 2, (k[1] - 1) / 2)
                    }
                )
            } else {
                "write `padding: 0` (valid) or the rows and columns to pad; an even window cannot pad both sides equally: put a `zero_pad2d` with [top, left, bottom, right] before it".to_string()
            }));
        }
    }
    let pad = a.pair0("padding")?.unwrap_or([0, 0]);
    let dilation = if max {
        a.pair("dilation")?.unwrap_or([1, 1])
    } else {
        [1, 1]
    };
    let ceil = a.bool("ceil", false)?;
    let (count_include_pad, divisor_override) = if max {
        (true, None)
    } else {
        (
            a.bool("count_include_pad", true)?,
            a.positive("divisor_override")?,
        )
    };
    let functional = a.bool("functional", false)?;
    Ok(Box::new(Pool {
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

fn build_max(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_pool(a, true)
}

fn build_avg(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_pool(a, false)
}

impl Op for Pool {
    fn op(&self) -> &'static str {
        if self.max {
            "maxpool2d"
        } else {
            "avgpool2d"
        }
    }
    fn label(&self) -> String {
        let mut s = format!(
            "{} {}×{}",
            if self.max { "maxpool" } else { "avgpool" },
            self.kernel[0],
            self.kernel[1]
        );
        if self.stride != [1, 1] {
            s += &format!("/{}", pair_label(self.stride));
        }
        if self.pad != [0, 0] {
            s += &format!(" p{}", pair_label(self.pad));
        }
        if self.dilation != [1, 1] {
            s += &format!(" d{}", pair_label(self.dilation));
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
        let s = &inputs[0].0;
        let mut hw = [0; 2];
        for ax in 0..2 {
            hw[ax] = pool_out(
                s[2 + ax],
                self.kernel[ax],
                self.stride[ax],
                self.pad[ax],
                self.dilation[ax],
                self.ceil,
            )
            .map_err(|m| {
                Diagnostic::new(format!("{} on a {}×{} input: {m}", self.op(), s[2], s[3]))
                    .help("use a smaller window or padding, or check the input size (--input)")
            })?;
        }
        Ok(vec![Shape(vec![s[0], s[1], hw[0], hw[1]])])
    }
    fn cost(&self, _inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Max: kh·kw-1 comparisons per output; average: kh·kw-1 adds and one division.
        let window = self.kernel[0] * self.kernel[1];
        let per = if self.max { window - 1 } else { window };
        Ok(Cost {
            macs: 0,
            flops: mul(&[outputs[0].numel()?, per])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Window {
            kernel: self.kernel.into(),
            stride: self.stride.into(),
            pad_begin: self.pad.into(),
            dilation: self.dilation.into(),
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        (!self.functional).then_some(if self.max { "MaxPool2d" } else { "AvgPool2d" })
    }
    fn window(&self) -> Option<Window> {
        Some(Window {
            kernel: self.kernel.into(),
            stride: self.stride.into(),
            pad_begin: self.pad.into(),
            pad_end: self.pad.into(),
            dilation: self.dilation.into(),
            ceil: self.ceil,
        })
    }
}

impl Kernel for Pool {
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
        // Per channel already: the same pooling on one channel. Max and average pooling have
        // the same support on non-negative inputs.
        Collapsed::Layer(Box::new(self.clone()))
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let (h, w, oh, ow) = (x.shape[2], x.shape[3], dims[2], dims[3]);
        let [kh, kw] = [self.kernel[0] as isize, self.kernel[1] as isize];
        let [sh, sw] = [self.stride[0] as isize, self.stride[1] as isize];
        let [ph, pw] = [self.pad[0] as isize, self.pad[1] as isize];
        let [dh, dw] = [self.dilation[0] as isize, self.dilation[1] as isize];
        let geo = MaxGeometry {
            input: [h, w],
            output: [oh, ow],
            kernel: [kh as usize, kw as usize],
            stride: [sh as usize, sw as usize],
            pad: [ph as usize, pw as usize],
            dilation: [dh as usize, dw as usize],
        };
        let plane = oh * ow;
        let c = x.shape[1];
        if self.max && ctx.want_aux {
            // PyTorch: padding is −∞; the index is the flat position in the input plane.
            let mut out = ctx.output(&dims);
            let mut idx = vec![0u32; out.numel()];
            out.data
                .par_chunks_mut(plane)
                .zip(idx.par_chunks_mut(plane))
                .enumerate()
                .for_each(|(bc, (dst, ids))| {
                    vectorised(
                        #[inline(always)]
                        || max_plane::<true>(&x.data[bc * h * w..(bc + 1) * h * w], dst, ids, &geo),
                    )
                });
            ctx.aux_out = Some(idx);
            return Ok(vec![out]);
        }
        // Every element is written: into the plan's view when it gives one (this layer's
        // channels of a concatenation, `Ctx::into`), else into an output of its own; the
        // fused activation applied plane by plane.
        let view = ctx.into.take();
        let mut out = match view {
            Some(_) => crate::kernels::OutView::placeholder(&dims),
            None => ctx.output(&dims),
        };
        let epilogue = ctx.epilogue.take_act();
        let mut planes: Vec<&mut [f32]> = match view {
            Some(v) => v
                .samples(c * plane)
                .into_iter()
                .flat_map(|s| s.chunks_mut(plane.max(1)))
                .collect(),
            None => out.data.chunks_mut(plane.max(1)).collect(),
        };
        // Planes grouped into tasks of some 64k window taps (small planes cost more to hand
        // out than to pool).
        let work = plane * self.kernel[0] as usize * self.kernel[1] as usize;
        let min_planes = (1usize << 16).div_ceil(work.max(1));
        let avg = (!self.max).then_some(AvgRule {
            count_include_pad: self.count_include_pad,
            divisor: self.divisor_override,
        });
        // Stride 1, undilated, every window inside the padded input (GoogLeNet's and
        // Inception's branch pools): over a padded copy of the plane, each tap one pass over
        // the flattened plane; an average only where its divisor is the same everywhere.
        let full = h * w > 0
            && oh + kh as usize - 1 == h + 2 * ph as usize
            && ow + kw as usize - 1 == w + 2 * pw as usize;
        let taps = (kh * kw) as f32;
        let flat = match (self.stride, self.dilation, full, self.max) {
            ([1, 1], [1, 1], true, true) => Some(1.0),
            ([1, 1], [1, 1], true, false) => match self.divisor_override {
                Some(d) => Some(d as f32),
                None if self.count_include_pad || (ph, pw) == (0, 0) => Some(taps),
                None => None,
            },
            _ => None,
        };
        // A strided max pool, undilated and unpadded, whose every window lies inside the
        // input (SqueezeNet's 3×3/2 pools, ceil mode adding no window): separable, rows
        // first (see `separable_max_plane`).
        let separable = self.max
            && flat.is_none()
            && self.dilation == [1, 1]
            && (ph, pw) == (0, 0)
            && oh > 0
            && ow > 0
            && (oh - 1) * sh as usize + kh as usize <= h
            && (ow - 1) * sw as usize + kw as usize <= w;
        if let Some(d) = flat {
            // Planes several at a time, as one flattened buffer of padded planes (see
            // `flat_planes`): on small maps each tap's pass would otherwise be a few vectors
            // and a scalar remainder per plane.
            let group = (FLAT_FLOATS / (h + 2 * ph as usize) / (w + 2 * pw as usize)).max(1);
            let max = self.max;
            planes
                .par_chunks_mut(group)
                .enumerate()
                .for_each(|(i, dsts)| {
                    let bc = i * group;
                    let src = &x.data[bc * h * w..(bc + dsts.len()) * h * w];
                    crate::kernels::with_thread_scratch(|buf| {
                        vectorised(
                            #[inline(always)]
                            || {
                                if max {
                                    flat_planes::<true>(src, dsts, &geo, buf, d)
                                } else {
                                    flat_planes::<false>(src, dsts, &geo, buf, d)
                                }
                                if let Some(f) = epilogue {
                                    for dst in dsts.iter_mut() {
                                        f.apply_here(dst);
                                    }
                                }
                            },
                        )
                    })
                });
            return Ok(vec![out]);
        }
        planes
            .into_par_iter()
            .with_min_len(min_planes)
            .enumerate()
            .for_each(|(bc, dst)| {
                let src = &x.data[bc * h * w..(bc + 1) * h * w];
                if separable {
                    crate::kernels::with_thread_scratch(|buf| {
                        vectorised(
                            #[inline(always)]
                            || {
                                separable_max_plane(src, dst, &geo, buf);
                                if let Some(f) = epilogue {
                                    f.apply_here(dst);
                                }
                            },
                        )
                    });
                    return;
                }
                vectorised(
                    #[inline(always)]
                    || {
                        match avg {
                            None => window_plane::<true>(src, dst, &geo, None),
                            Some(rule) => window_plane::<false>(src, dst, &geo, Some(rule)),
                        }
                        if let Some(f) = epilogue {
                            f.apply_here(dst);
                        }
                    },
                )
            });
        Ok(vec![out])
    }
}

impl Counting for Pool {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        window_pool_convention(self.max, self.functional, c, inputs, outputs)
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        window_pool_training(self.max, self.cost(inputs, outputs)?, outputs, input_grad)
    }
}

/// What profiler `c` charges a max (`max`) or average pooling window layer of any rank, called
/// as a module or, with `functional`, as `F.*_pool*d`.
pub(super) fn window_pool_convention(
    max: bool,
    functional: bool,
    c: Convention,
    inputs: &[Shape],
    outputs: &[Shape],
) -> Result<u64, Diagnostic> {
    match c {
        // ptflops: numel(input) in the module hook, and again in its patched functional
        // (F.max_pool2d, F.avg_pool3d…), which the module's forward calls; a functional call
        // only the latter.
        Convention::Ptflops => mul(&[2 - u64::from(functional), inputs[0].numel()?]),
        // thop (modules only): numel(output) for average pooling, nothing for max pooling.
        Convention::Thop if !max && !functional => outputs[0].numel(),
        // fvcore has no rule for aten::max_pool{1,2,3}d / avg_pool{1,2,3}d.
        _ => Ok(0),
    }
}

/// The training rule of an adaptive max or average pooling of any rank, whose forward costs
/// `cost`. PyTorch computes an adaptive average pooling to one unit per axis as a mean, whose
/// backward needs only the sizes: nothing saved. Other adaptive average pools save their
/// input; max pools their input and int64 indices.
pub(super) fn adaptive_pool_training(
    max: bool,
    cost: Cost,
    outputs: &[Shape],
    input_grad: bool,
) -> Result<Training, Diagnostic> {
    let y = &outputs[0];
    let one = y.0[2..].iter().all(|&d| d == 1);
    let saved = match (max, one) {
        (false, true) => Saved::default(),
        (false, false) => Saved {
            inputs: vec![0],
            ..Default::default()
        },
        (true, _) => Saved {
            inputs: vec![0],
            output: false,
            extra_bytes: mul(&[y.numel()?, 8])?,
        },
    };
    Ok(Training {
        forward_flops: cost.flops,
        backward_flops: if input_grad { cost.flops } else { 0 },
        saved,
        view: false,
        grad_views: vec![],
        cublas: false,
    })
}

/// The training rule of a max or average pooling window layer of any rank, whose forward
/// costs `cost`. Max pooling saves its input and the argmax of every window (int64), and
/// routes each output gradient to one input (1 add per output); average pooling saves its
/// input and spreads each output gradient over its window (as many FLOPs as forward).
pub(super) fn window_pool_training(
    max: bool,
    cost: Cost,
    outputs: &[Shape],
    input_grad: bool,
) -> Result<Training, Diagnostic> {
    let y = outputs[0].numel()?;
    let forward = cost.flops;
    Ok(Training {
        forward_flops: forward,
        backward_flops: match (input_grad, max) {
            (false, _) => 0,
            (true, true) => y,
            (true, false) => forward,
        },
        saved: Saved {
            inputs: vec![0],
            output: false,
            extra_bytes: if max { mul(&[y, 8])? } else { 0 },
        },
        view: false,
        grad_views: vec![],
        cublas: false,
    })
}

#[derive(Debug, Clone)]
struct Adaptive {
    max: bool,
    /// None: global pooling (output 1×1).
    size: Option<[u64; 2]>,
    /// The PyTorch model calls `F.adaptive_avg_pool2d` (or `F.adaptive_max_pool2d`) rather
    /// than a module (docs/COUNTING.md).
    functional: bool,
    /// `functional: mean` (global average pooling only): the model computes `x.mean([2, 3])`
    /// (torchvision's ShuffleNetV2), which no profiler charges.
    mean: bool,
}

fn build_adaptive(a: &mut Attrs, max: bool, global: bool) -> Result<Box<dyn Layer>, Diagnostic> {
    need_4d(a.op, a.input())?;
    let size = if global {
        None
    } else {
        Some(a.req_pair("size", "[7, 7]")?)
    };
    // `functional`: false (a module), true (`F.adaptive_*_pool2d`), or, for global average
    // pooling, `mean` (`x.mean([2, 3])`).
    let (functional, mean) =
        match a.raw("functional")? {
            None => (false, false),
            Some(v) => match (v.as_str(), global && !max) {
                (Some("mean"), true) => (true, true),
                (Some(_), _) => return Err(Diagnostic::new(format!(
                    "`functional: {v}` is not true or false{}",
                    if global && !max { " or `mean`" } else { "" }
                ))
                .at(&v.path)
                .help(if global && !max {
                    "write `functional: true` for F.adaptive_avg_pool2d, `functional: mean` for \
                     x.mean([2, 3])"
                } else {
                    "write `functional: true` when the model calls the function, not a module"
                })),
                (None, _) => (crate::layers::attrs_bool(&v, "functional")?, false),
            },
        };
    Ok(Box::new(Adaptive {
        max,
        size,
        functional,
        mean,
    }))
}

fn build_adaptive_avg(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, false, false)
}
fn build_adaptive_max(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, true, false)
}
fn build_global_avg(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, false, true)
}
fn build_global_max(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_adaptive(a, true, true)
}

impl Op for Adaptive {
    fn op(&self) -> &'static str {
        match (self.max, self.size.is_some()) {
            (false, true) => "adaptive_avgpool2d",
            (true, true) => "adaptive_maxpool2d",
            (false, false) => "global_avgpool",
            (true, false) => "global_maxpool",
        }
    }
    fn label(&self) -> String {
        let kind = if self.max { "max" } else { "avg" };
        match self.size {
            Some(s) => format!("adaptive {kind}pool → {}×{}", s[0], s[1]),
            None => format!("global {kind}pool"),
        }
    }
    fn category(&self) -> Category {
        Category::Pooling
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        let [h, w] = self.size.unwrap_or([1, 1]);
        Ok(vec![Shape(vec![s[0], s[1], h, w])])
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Exact: the sum over output positions of each window's area (windows may overlap).
        let (x, y) = (&inputs[0].0, &outputs[0].0);
        let rows = adaptive_window_sum(y[2], x[2]);
        let cols = adaptive_window_sum(y[3], x[3]);
        let reads = mul(&[x[0], x[1], rows, cols])?;
        let outs = outputs[0].numel()?;
        // Average: area-1 adds + 1 division = area per output; max: area-1 comparisons.
        Ok(Cost {
            macs: 0,
            flops: if self.max { reads - outs } else { reads },
        })
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        let x = &inputs[0].0;
        match self.size {
            // An adaptive pool whose windows tile the input evenly is an ordinary window.
            Some([h, w]) if x[2].is_multiple_of(h) && x[3].is_multiple_of(w) => {
                let k = [x[2] / h, x[3] / w];
                if k == [1, 1] {
                    Geometry::Pointwise
                } else {
                    Geometry::Window {
                        kernel: k.into(),
                        stride: k.into(),
                        pad_begin: [0, 0].into(),
                        dilation: [1, 1].into(),
                    }
                }
            }
            _ => Geometry::Global,
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        (!self.functional).then_some(if self.max {
            "AdaptiveMaxPool2d"
        } else {
            "AdaptiveAvgPool2d"
        })
    }
}

impl Kernel for Adaptive {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        super::onnx::adaptive(e, self.max, &self.size.unwrap_or([1, 1]))
    }
    fn is_global_mean(&self) -> bool {
        self.size.is_none() && !self.max
    }
    fn collapsed(&self) -> Collapsed {
        // Adaptive windows to a fixed size are measured as they are; global pooling sees
        // everything.
        match self.size {
            Some(_) => Collapsed::Layer(Box::new(self.clone())),
            None => Collapsed::Stop,
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
        let (h, w, oh, ow) = (x.shape[2], x.shape[3], dims[2], dims[3]);
        // Every element is written below (an empty input has an empty output).
        let mut out = ctx.output(&dims);
        let max = self.max;
        if (oh, ow) == (1, 1) && !max && h * w > 0 {
            // Global average: each plane summed with 16 running sums (vectorised), planes
            // grouped into tasks of some 16k elements (a task per plane, one element of
            // output each, cost more to hand out than to sum).
            let plane = h * w;
            let per_task = (1usize << 14).div_ceil(plane);
            out.data
                .par_chunks_mut(per_task)
                .enumerate()
                .for_each(|(t, dst)| {
                    crate::kernels::vectorised(
                        #[inline(always)]
                        || {
                            for (j, d) in dst.iter_mut().enumerate() {
                                let bc = t * per_task + j;
                                let src = &x.data[bc * plane..(bc + 1) * plane];
                                *d = crate::kernels::sum_f32(src) / plane as f32;
                            }
                        },
                    )
                });
            return Ok(vec![out]);
        }
        out.data
            .par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(bc, dst)| {
                let src = &x.data[bc * h * w..(bc + 1) * h * w];
                for oy in 0..oh {
                    let (ys, ye) = adaptive_window(oy as u64, oh as u64, h as u64);
                    for ox in 0..ow {
                        let (xs, xe) = adaptive_window(ox as u64, ow as u64, w as u64);
                        let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                        for iy in ys as usize..ye as usize {
                            for ix in xs as usize..xe as usize {
                                let v = src[iy * w + ix];
                                // NaN-propagating, as PyTorch's max pools: a NaN in the
                                // window wins (f32::max would drop it).
                                acc = if max {
                                    if v > acc || v.is_nan() {
                                        v
                                    } else {
                                        acc
                                    }
                                } else {
                                    acc + v
                                };
                            }
                        }
                        dst[oy * ow + ox] = if max {
                            acc
                        } else {
                            acc / ((ye - ys) * (xe - xs)) as f32
                        };
                    }
                }
            });
        Ok(vec![out])
    }
}

impl Counting for Adaptive {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let (x, y) = (&inputs[0], &outputs[0]);
        match (c, self.max) {
            // A mean (`x.mean([2, 3])`): no tool has a rule for aten::mean or patches it.
            _ if self.mean => Ok(0),
            // fvcore: numel(input) for aten::adaptive_avg_pool2d; no rule for the max form.
            (Convention::Fvcore, false) => x.numel(),
            // ptflops: numel(input), twice (module hook + patched functional), max or average;
            // once for a functional call.
            (Convention::Ptflops, _) => mul(&[2 - u64::from(self.functional), x.numel()?]),
            // thop (modules only): (prod(in/out) + 1) · numel(output) in float64, truncated;
            // 0 for max.
            (Convention::Thop, false) if !self.functional => Ok(thop_adaptive_avg(
                [x.0[2], x.0[3]],
                [y.0[2], y.0[3]],
                y.numel()?,
            )),
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
        adaptive_pool_training(self.max, self.cost(inputs, outputs)?, outputs, input_grad)
    }
}

/// `row[j] = max(row[j], line[j·S])`, NaN-propagating, branch-free (a select per tap: random
/// data would mispredict a branch); a constant stride lets the compiler vectorise the
/// interleaved loads.
#[inline(always)]
fn max_taps<const S: usize>(row: &mut [f32], line: &[f32]) {
    let sel = |b: &mut f32, v: f32| *b = if v > *b || v.is_nan() { v } else { *b };
    // Whole groups of S inputs, then the last tap (its group may run past the line's end).
    let (last, body) = row.split_last_mut().expect("called with hi > lo");
    for (b, group) in body.iter_mut().zip(line.chunks_exact(S)) {
        sel(b, group[0]);
    }
    sel(last, line[body.len() * S]);
}

/// [`max_taps`] for any stride.
fn max_taps_strided(row: &mut [f32], line: &[f32], stride: usize) {
    for (b, &v) in row.iter_mut().zip(line.iter().step_by(stride)) {
        *b = if v > *b || v.is_nan() { v } else { *b };
    }
}

/// Average pooling's divisor rules (PyTorch's `count_include_pad`, `divisor_override`).
#[derive(Debug, Clone, Copy)]
struct AvgRule {
    count_include_pad: bool,
    divisor: Option<u64>,
}

/// Output columns a register block of the pooling kernel computes at once.
const BLOCK: usize = 16;

/// `b ← max(b, v)` (NaN-propagating, branch-free: a larger value or a NaN replaces the
/// best) for a max pool, `b ← b + v` for an average one.
#[inline(always)]
fn pool_op<const MAX: bool>(b: &mut f32, v: f32) {
    *b = if MAX {
        if v > *b || v.is_nan() {
            v
        } else {
            *b
        }
    } else {
        *b + v
    };
}

/// `row[j] op= line[j·S]` for every `j` (a constant stride lets the compiler vectorise the
/// interleaved loads).
#[inline(always)]
fn row_taps<const MAX: bool, const S: usize>(row: &mut [f32], line: &[f32]) {
    // Whole groups of S inputs, then the last tap (its group may run past the line's end).
    let (last, body) = row.split_last_mut().expect("called with hi > lo");
    for (b, group) in body.iter_mut().zip(line.chunks_exact(S)) {
        pool_op::<MAX>(b, group[0]);
    }
    pool_op::<MAX>(last, line[body.len() * S]);
}

/// [`row_taps`] for any stride.
#[inline(always)]
fn row_taps_strided<const MAX: bool>(row: &mut [f32], line: &[f32], stride: usize) {
    for (b, &v) in row.iter_mut().zip(line.iter().step_by(stride)) {
        pool_op::<MAX>(b, v);
    }
}

/// [`BLOCK`] outputs whose window taps all lie inside the input rows `lines` (the window's
/// rows inside the image, in order), carried through every tap in registers: output `j`
/// reads `line[j·s + kx·dx]` (`line` starts at the block's first window column). Inlined, so
/// a caller passing a literal stride gets a loop specialised for it.
#[inline(always)]
fn block_taps<const MAX: bool>(
    lines: &[&[f32]],
    start: usize,
    kw: usize,
    dx: usize,
    s: usize,
) -> [f32; BLOCK] {
    let mut acc = [if MAX { f32::NEG_INFINITY } else { 0.0 }; BLOCK];
    for line in lines {
        for kx in 0..kw {
            let o = start + kx * dx;
            let seg = &line[o..o + (BLOCK - 1) * s + 1];
            for (j, a) in acc.iter_mut().enumerate() {
                pool_op::<MAX>(a, seg[j * s]);
            }
        }
    }
    acc
}

/// Floats of padded planes [`flat_planes`] takes at once (16 KiB, as much again for the
/// running results: both stay in L1): 7×7 maps go 50 planes to a task, 14×14 ones 16,
/// 28×28 ones 4, planes of 64×64 and more one by one.
const FLAT_FLOATS: usize = 4 << 10;

/// Stride-1 undilated pooling of planes whose every window lies inside the padded input
/// (`src` holds `dsts.len()` planes, one after the other): the planes are copied into `buf`
/// with their padding (−∞ for max, 0 for average), one after the other, and each tap, in
/// (ky, kx) order, is one pass over the flattened padded planes at a constant shift (output
/// `(oy, ox)` of plane `p` is `p·H'·W' + oy·W' + ox`; the positions past each row and between
/// planes are computed and dropped), so that short rows and small maps cost no more per
/// element than long ones. A padding tap leaves a max as it was and adds 0 to a sum; sums
/// are divided by `divisor`. Every output sees the same taps in the same order as a plane
/// pooled alone.
#[inline(always)]
fn flat_planes<const MAX: bool>(
    src: &[f32],
    dsts: &mut [&mut [f32]],
    g: &MaxGeometry,
    buf: &mut Vec<f32>,
    divisor: f32,
) {
    let ([ih, iw], [oh, ow]) = (g.input, g.output);
    let ([kh, kw], [ph, pw]) = (g.kernel, g.pad);
    let (hp, wp) = (ih + 2 * ph, iw + 2 * pw);
    if oh == 0 || ow == 0 || dsts.is_empty() || iw == 0 {
        return;
    }
    let plane = hp * wp;
    let n = (dsts.len() - 1) * plane + (oh - 1) * wp + ow;
    // The padded planes, then the running results, both starting at the padding's value (the
    // identity of the operation).
    let fill = if MAX { f32::NEG_INFINITY } else { 0.0 };
    buf.clear();
    buf.resize(dsts.len() * plane + n, fill);
    let (padded, acc) = buf.split_at_mut(dsts.len() * plane);
    for (p, s) in src.chunks_exact(ih * iw).enumerate() {
        for (y, row) in s.chunks_exact(iw).enumerate() {
            let at = p * plane + (y + ph) * wp + pw;
            padded[at..at + iw].copy_from_slice(row);
        }
    }
    for ky in 0..kh {
        for kx in 0..kw {
            let shift = ky * wp + kx;
            for (a, &v) in acc.iter_mut().zip(&padded[shift..shift + n]) {
                pool_op::<MAX>(a, v);
            }
        }
    }
    for (p, dst) in dsts.iter_mut().enumerate() {
        for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
            let from = &acc[p * plane + oy * wp..][..ow];
            if MAX {
                out.copy_from_slice(from);
            } else {
                for (o, &v) in out.iter_mut().zip(from) {
                    *o = v / divisor;
                }
            }
        }
    }
}

/// Max pooling of one plane whose every window lies inside the input (no padding, no
/// dilation), separably: each input row a window row reads is first reduced over the `kw`
/// taps of every output column (`buf`, one row of `ow` per input row), then each output row
/// over the `kh` reduced rows of its window — `kh + kw` passes over contiguous or
/// constant-stride rows instead of `kh·kw` strided ones. PyTorch's rule (taps in (ky, kx)
/// order, a larger value or a NaN replacing the best) picks the first greatest tap in that
/// order, or the last NaN: the first greatest (or last NaN) of the first (or last) row that
/// holds it, which is what the two passes pick — the same value, bit for bit.
#[inline(always)]
fn separable_max_plane(src: &[f32], dst: &mut [f32], g: &MaxGeometry, buf: &mut Vec<f32>) {
    let ([_, iw], [oh, ow]) = (g.input, g.output);
    let ([kh, kw], [sy, sx]) = (g.kernel, g.stride);
    let rows = (oh - 1) * sy + kh;
    buf.clear();
    buf.resize(rows * ow, f32::NEG_INFINITY);
    if vector_rows(src, dst, g, buf) {
        return;
    }
    for (line, reduced) in src.chunks_exact(iw).zip(buf.chunks_exact_mut(ow)) {
        for kx in 0..kw {
            let line = &line[kx..];
            match sx {
                1 => row_taps::<true, 1>(reduced, line),
                2 => row_taps::<true, 2>(reduced, line),
                _ => row_taps_strided::<true>(reduced, line, sx),
            }
        }
    }
    for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
        out.fill(f32::NEG_INFINITY);
        for ky in 0..kh {
            let reduced = &buf[(oy * sy + ky) * ow..][..ow];
            for (o, &v) in out.iter_mut().zip(reduced) {
                pool_op::<true>(o, v);
            }
        }
    }
}

/// [`separable_max_plane`]'s two passes by `kernels::pooling` (16 columns per vector): each
/// input row reduced over the window's columns (one call: the taps in kx order from −∞), then
/// each output row over its window's reduced rows, in ky order. False (nothing written) where
/// that kernel does not run (no AVX-512, a horizontal stride other than 1 or 2).
#[inline(always)]
fn vector_rows(src: &[f32], dst: &mut [f32], g: &MaxGeometry, buf: &mut [f32]) -> bool {
    let ([_, iw], [_, ow]) = (g.input, g.output);
    let ([kh, kw], [sy, sx]) = (g.kernel, g.stride);
    if !pooling::available() || !matches!(sx, 1 | 2) {
        return false;
    }
    for (line, reduced) in src.chunks_exact(iw).zip(buf.chunks_exact_mut(ow)) {
        pooling::window_row::<true>(&[line], 0, kw, 1, sx, reduced);
    }
    let mut rows: Vec<&[f32]> = Vec::with_capacity(kh);
    for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
        rows.clear();
        rows.extend((0..kh).map(|ky| &buf[(oy * sy + ky) * ow..][..ow]));
        pooling::window_row::<true>(&rows, 0, 1, 1, 1, out);
    }
    true
}

/// Per kx: the output columns whose tap falls inside the input row, and the offset it reads
/// at (`ox·stride + offset`).
fn tap_columns(g: &MaxGeometry) -> Vec<(usize, usize, isize)> {
    let ([_, iw], [_, ow]) = (g.input, g.output);
    let (sx, dx, px) = (g.stride[1], g.dilation[1], g.pad[1] as isize);
    (0..g.kernel[1])
        .map(|kx| {
            let off = (kx * dx) as isize - px;
            let lo = if off >= 0 {
                0
            } else {
                ((-off) as usize).div_ceil(sx)
            };
            let hi = if iw as isize - off <= 0 {
                0
            } else {
                ((iw as isize - off) as usize).div_ceil(sx)
            };
            (lo.min(ow), hi.clamp(lo.min(ow), ow), off)
        })
        .collect()
}

/// Max (`MAX`) or average pooling of one plane without indices, with PyTorch's rules: taps
/// in (ky, kx) order for every output (a larger value or a NaN replaces the best; sums
/// added in that order from 0), padding −∞ for max and left out of sums. The columns whose
/// every tap lies inside the row go by register blocks of [`BLOCK`] outputs through all the
/// taps; the others tap by tap over the columns' range. An average divides by its window's
/// count (`avg`'s rules), and is 0 where the window lies wholly in the padding.
#[inline(always)]
fn window_plane<const MAX: bool>(
    src: &[f32],
    dst: &mut [f32],
    g: &MaxGeometry,
    avg: Option<AvgRule>,
) {
    let ([ih, iw], [oh, ow]) = (g.input, g.output);
    let [kh, kw] = g.kernel;
    let (sx, dx) = (g.stride[1], g.dilation[1]);
    let cols = tap_columns(g);
    // Columns where every kx tap is inside the row.
    let inner_lo = cols.iter().map(|c| c.0).max().unwrap_or(0);
    let inner_hi = cols.iter().map(|c| c.1).min().unwrap_or(0).max(inner_lo);
    let blocks = (inner_hi - inner_lo) / BLOCK;
    let blocked = inner_lo..inner_lo + blocks * BLOCK;
    let init = if MAX { f32::NEG_INFINITY } else { 0.0 };
    let mut lines: Vec<&[f32]> = Vec::with_capacity(kh);
    for oy in 0..oh {
        let row = &mut dst[oy * ow..(oy + 1) * ow];
        let y0 = (oy * g.stride[0]) as isize - g.pad[0] as isize;
        lines.clear();
        lines.extend((0..kh).filter_map(|ky| {
            let iy = y0 + (ky * g.dilation[0]) as isize;
            (iy >= 0 && (iy as usize) < ih).then(|| &src[iy as usize * iw..(iy as usize + 1) * iw])
        }));
        // The inner columns 16 per vector (`kernels::pooling`) where the CPU has AVX-512 and
        // the stride is 1 or 2, else by register blocks; the others tap by tap below.
        let vector = inner_hi > inner_lo
            && pooling::window_row::<MAX>(
                &lines,
                inner_lo * sx - g.pad[1],
                kw,
                dx,
                sx,
                &mut row[inner_lo..inner_hi],
            );
        let (blocks, blocked) = if vector {
            (0, inner_lo..inner_hi)
        } else {
            (blocks, blocked.clone())
        };
        for b in 0..blocks {
            let o0 = blocked.start + b * BLOCK;
            // The block's first window column: inside the row, as o0 ≥ every tap's lo.
            let start = (o0 * sx) as isize - g.pad[1] as isize;
            let start = start as usize;
            // Literal strides 1 and 2: the inlined loop is specialised for each.
            let acc = match sx {
                1 => block_taps::<MAX>(&lines, start, kw, dx, 1),
                2 => block_taps::<MAX>(&lines, start, kw, dx, 2),
                _ => block_taps::<MAX>(&lines, start, kw, dx, sx),
            };
            row[o0..o0 + BLOCK].copy_from_slice(&acc);
        }
        // The other columns, tap by tap over their range.
        for (a, b) in [(0, blocked.start), (blocked.end, ow)] {
            if b <= a {
                continue;
            }
            row[a..b].fill(init);
            for line in &lines {
                for &(lo, hi, off) in &cols {
                    let (lo, hi) = (lo.max(a), hi.min(b));
                    if hi <= lo {
                        continue;
                    }
                    let start = (lo as isize * sx as isize + off) as usize;
                    let (part, line) = (&mut row[lo..hi], &line[start..]);
                    match sx {
                        1 => row_taps::<MAX, 1>(part, line),
                        2 => row_taps::<MAX, 2>(part, line),
                        _ => row_taps_strided::<MAX>(part, line, sx),
                    }
                }
            }
        }
        if let Some(rule) = avg {
            // PyTorch's avg_pool2d divisors: the window clipped to the padded input
            // (count_include_pad), or to the input, or the override.
            let (ph, pw) = (g.pad[0] as isize, g.pad[1] as isize);
            let (hi, wi) = (ih as isize, iw as isize);
            let (hs, he) = (y0, (y0 + kh as isize).min(hi + ph));
            let rows_in = he.min(hi) - hs.max(0);
            for (ox, v) in row.iter_mut().enumerate() {
                let ws = (ox * sx) as isize - pw;
                let we = (ws + kw as isize).min(wi + pw);
                let cols_in = we.min(wi) - ws.max(0);
                if rows_in <= 0 || cols_in <= 0 {
                    *v = 0.0;
                    continue;
                }
                let d = match rule.divisor {
                    Some(d) => d as f32,
                    None if rule.count_include_pad => ((he - hs) * (we - ws)) as f32,
                    None => (rows_in * cols_in) as f32,
                };
                *v /= d;
            }
        }
    }
}

/// The geometry of a 2-D max pool over one plane.
struct MaxGeometry {
    input: [usize; 2],
    output: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

/// Max pooling of one plane, tap by tap over whole output rows (no per-tap bounds test), with
/// PyTorch's rules: taps in (ky, kx) order, a larger value or a NaN replaces the best, and the
/// index starts at the first tap inside the image. `ids` is written when `INDICES`.
#[inline(always)]
fn max_plane<const INDICES: bool>(src: &[f32], dst: &mut [f32], ids: &mut [u32], g: &MaxGeometry) {
    let ([ih, iw], [oh, ow]) = (g.input, g.output);
    let (sx, dx, px) = (g.stride[1], g.dilation[1], g.pad[1] as isize);
    // Per kx: the output columns whose tap falls inside the row, and the offset it reads at.
    let cols: Vec<(usize, usize, isize)> = (0..g.kernel[1])
        .map(|kx| {
            let off = (kx * dx) as isize - px;
            let lo = if off >= 0 {
                0
            } else {
                ((-off) as usize).div_ceil(sx)
            };
            let hi = if iw as isize - off <= 0 {
                0
            } else {
                ((iw as isize - off) as usize).div_ceil(sx)
            };
            (lo.min(ow), hi.clamp(lo.min(ow), ow), off)
        })
        .collect();
    for oy in 0..oh {
        let row = &mut dst[oy * ow..(oy + 1) * ow];
        row.fill(f32::NEG_INFINITY);
        let y0 = (oy * g.stride[0]) as isize - g.pad[0] as isize;
        let taps_y = (0..g.kernel[0]).filter_map(|ky| {
            let iy = y0 + (ky * g.dilation[0]) as isize;
            (iy >= 0 && (iy as usize) < ih).then_some(iy as usize)
        });
        if INDICES {
            // The first tap inside the image (PyTorch steps the start by the dilation).
            let first_y = taps_y.clone().next().unwrap_or(0);
            let id_row = &mut ids[oy * ow..(oy + 1) * ow];
            for (ox, id) in id_row.iter_mut().enumerate() {
                let mut x0 = (ox * sx) as isize - px;
                while x0 < 0 {
                    x0 += dx as isize;
                }
                *id = (first_y * iw) as u32 + x0 as u32;
            }
        }
        for iy in taps_y {
            let line = &src[iy * iw..(iy + 1) * iw];
            for &(lo, hi, off) in &cols {
                if INDICES {
                    for ox in lo..hi {
                        let ix = (ox as isize * sx as isize + off) as usize;
                        let v = line[ix];
                        if v > row[ox] || v.is_nan() {
                            row[ox] = v;
                            ids[oy * ow + ox] = (iy * iw + ix) as u32;
                        }
                    }
                } else if hi > lo {
                    let start = (lo as isize * sx as isize + off) as usize;
                    let (row, line) = (&mut row[lo..hi], &line[start..]);
                    match sx {
                        1 => max_taps::<1>(row, line),
                        2 => max_taps::<2>(row, line),
                        _ => max_taps_strided(row, line, sx),
                    }
                }
            }
        }
    }
}

/// thop's adaptive average pooling rule, in its own float64 arithmetic:
/// `int((prod(in_hw / out_hw) + 1) · numel(output))`, the window area taken as the (possibly
/// fractional) ratio of sizes.
fn thop_adaptive_avg(in_hw: [u64; 2], out_hw: [u64; 2], out_numel: u64) -> u64 {
    let k = (in_hw[0] as f64 / out_hw[0] as f64) * (in_hw[1] as f64 / out_hw[1] as f64);
    ((k + 1.0) * out_numel as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::{thop_adaptive_avg, Convention};
    use crate::layers::testutil::build;
    use crate::layers::Shape;

    #[test]
    fn functional_calls_under_the_profilers() {
        // Global average pooling of 1×1280×7×7 (MobileNetV2's head), 62,720 inputs.
        let x = [Shape(vec![1, 1280, 7, 7])];
        let y = [Shape(vec![1, 1280, 1, 1])];
        let cost = |attrs: &str, c: Convention| {
            let (l, _) = build("global_avgpool", attrs, &[&[1, 1280, 7, 7]]).unwrap();
            l.convention_cost(c, &x, &y).unwrap()
        };
        // nn.AdaptiveAvgPool2d: ptflops hooks the module and its patched F.adaptive_avg_pool2d
        // (2 × 62,720); thop (49 + 1) × 1280 = 64,000.
        assert_eq!(cost("{}", Convention::Ptflops), 125_440);
        assert_eq!(cost("{}", Convention::Thop), 64_000);
        // F.adaptive_avg_pool2d: only the patched function (62,720); thop sees no module.
        assert_eq!(cost("{functional: true}", Convention::Ptflops), 62_720);
        assert_eq!(cost("{functional: true}", Convention::Thop), 0);
        assert_eq!(cost("{functional: true}", Convention::Fvcore), 62_720);
        // x.mean([2, 3]): nobody charges it.
        for c in Convention::ALL {
            assert_eq!(cost("{functional: mean}", c), 0, "{}", c.name());
        }
        // `mean` is for global average pooling only; other values are refused.
        let e = build("global_maxpool", "{functional: mean}", &[&[1, 8, 7, 7]]).unwrap_err();
        assert!(e.message.contains("is not true or false"), "{e}");
        let e = build("global_avgpool", "{functional: maybe}", &[&[1, 8, 7, 7]]).unwrap_err();
        assert!(e.message.contains("or `mean`"), "{e}");
        assert!(e.help.unwrap().contains("x.mean([2, 3])"));
        // A functional pool has no PyTorch module type.
        let (l, _) = build("maxpool", "{kernel: 3, functional: true}", &[&[1, 8, 9, 9]]).unwrap();
        assert_eq!(l.torch_type(), None);
    }

    #[test]
    fn pooling_sizes() {
        let (_, o) = build(
            "maxpool",
            "{kernel: 3, stride: 2, ceil: true}",
            &[&[1, 64, 112, 112]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 64, 56, 56]);
        let (_, o) = build("maxpool", "{kernel: 3, stride: 2}", &[&[1, 64, 112, 112]]).unwrap();
        assert_eq!(o[0].0, vec![1, 64, 55, 55]);
        let (_, o) = build("avgpool", "{kernel: 2}", &[&[1, 6, 28, 28]]).unwrap();
        assert_eq!(o[0].0, vec![1, 6, 14, 14]);
        let e = build("maxpool", "{kernel: 2, padding: 2}", &[&[1, 6, 28, 28]]).unwrap_err();
        assert!(
            e.message
                .contains("padding 2 is more than half the kernel span 2"),
            "{e}"
        );
    }

    #[test]
    fn conventions_measured() {
        // On 2×8×10×10 (measured; ptflops at batch 1, doubled here): maxpool 3/2 and avgpool
        // 3/2 → 2×8×4×4; adaptive max and average pools to 3×3.
        use super::Convention::*;
        let x = Shape(vec![2, 8, 10, 10]);
        let cases: &[(&str, &str, [u64; 4])] = &[
            ("maxpool", "{kernel: 3, stride: 2}", [0, 2 * 1600, 0, 0]),
            ("avgpool", "{kernel: 3, stride: 2}", [0, 2 * 1600, 256, 0]),
            ("adaptive_maxpool2d", "{size: 3}", [0, 2 * 1600, 0, 0]),
            ("adaptive_avgpool2d", "{size: 3}", [1600, 2 * 1600, 1744, 0]),
        ];
        for (op, attrs, want) in cases {
            let (l, y) = build(op, attrs, &[&x.0]).unwrap();
            let got: Vec<u64> = [Fvcore, Ptflops, Thop, Torchinfo]
                .iter()
                .map(|&c| l.convention_cost(c, std::slice::from_ref(&x), &y).unwrap())
                .collect();
            assert_eq!(got, want.to_vec(), "{op} {attrs}");
        }
    }

    #[test]
    fn adaptive_flops_are_exact() {
        // 7 → 3: windows [0,3), [2,5), [4,7): 3 + 3 + 3 rows… = floor/ceil bounds.
        let (l, o) = build("adaptive_avgpool2d", "{size: 3}", &[&[1, 1, 7, 7]]).unwrap();
        let rows: u64 = (0..3u64)
            .map(|i| (((i + 1) * 7).div_ceil(3)) - (i * 7) / 3)
            .sum();
        let c = l.cost(&[Shape(vec![1, 1, 7, 7])], &o).unwrap();
        assert_eq!(c.flops, rows * rows);
        let (l, o) = build("gap", "{}", &[&[2, 8, 7, 7]]).unwrap();
        assert_eq!(o[0].0, vec![2, 8, 1, 1]);
        assert_eq!(
            l.cost(&[Shape(vec![2, 8, 7, 7])], &o).unwrap().flops,
            2 * 8 * 49
        );
    }

    #[test]
    fn thop_adaptive_rule() {
        // AdaptiveAvgPool2d(3) on 2×8×10×10 (measured with thop 0.1.1: 1744):
        // (10/3)² + 1 = 12.11…, × 144 outputs = 1744.0.
        assert_eq!(thop_adaptive_avg([10, 10], [3, 3], 2 * 8 * 9), 1744);
        // Global pooling of 2048×7×7: (49 + 1)·2048.
        assert_eq!(thop_adaptive_avg([7, 7], [1, 1], 2048), 50 * 2048);
    }
}
