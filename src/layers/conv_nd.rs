//! Convolution and transposed convolution over one or three spatial axes (`conv1d`,
//! `conv3d`, `conv_transpose1d`, `conv_transpose3d`), with PyTorch's options: stride, padding
//! (a number, one per axis, `same`, `valid`), dilation, groups, bias, `padding_mode` (zeros,
//! reflect, replicate, circular) and `output_padding`. Per-axis keys take one number or a list
//! of one per axis (`kernel: [3, 7, 7]`). The kernels are the rank-generic ones of
//! [`crate::kernels_nd`]. The rank-generic rules `conv2d` shares live here too: mode words
//! parsed once into enums (`mode_of`, `PAD_MODES`), `padding_mode` and its limits, `same`
//! padding, the `groups` and `output_padding` checks.

use super::{
    add, attrs_int, mul, per_element, Arity, AttrDefault, Attrs, Category, Collapsed, Convention,
    Cost, Counting, Geometry, Kernel, Layer, Op, OpType, Params, Shape, Training, WeightInfo,
    WeightedKind, Window,
};
use crate::error::Diagnostic;
use crate::geometry::{axis_name, conv_out, conv_transpose_out, Axes};
use crate::kernels::Ctx;
use crate::kernels_nd::{conv_nd, conv_transpose_nd, pad_nd, ConvPlan, PadMode, WindowNd};
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};
use rayon::prelude::*;

const KEYS: &[&str] = &[
    "out",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "padding_mode",
    "trainable",
];

const TRANSPOSED_KEYS: &[&str] = &[
    "out",
    "kernel",
    "stride",
    "padding",
    "output_padding",
    "dilation",
    "groups",
    "bias",
    "trainable",
];

/// What a convolution builds with when a key is left out (`conv2d` and the 1-D and 3-D ones).
pub(super) const DEFAULTS: &[(&str, AttrDefault)] = &[
    ("kernel", AttrDefault::Axes(None)),
    ("stride", AttrDefault::Axes(Some(1))),
    ("padding", AttrDefault::Padding),
    ("dilation", AttrDefault::Axes(Some(1))),
    ("groups", AttrDefault::Int(1)),
    ("bias", AttrDefault::Bool(true)),
    ("trainable", AttrDefault::Bool(true)),
    ("padding_mode", AttrDefault::Word("zeros")),
];

/// A transposed convolution's ([`DEFAULTS`] with `output_padding`, without `padding_mode`).
pub(super) const TRANSPOSED_DEFAULTS: &[(&str, AttrDefault)] = &[
    ("kernel", AttrDefault::Axes(None)),
    ("stride", AttrDefault::Axes(Some(1))),
    ("padding", AttrDefault::Padding),
    ("output_padding", AttrDefault::Axes(Some(0))),
    ("dilation", AttrDefault::Axes(Some(1))),
    ("groups", AttrDefault::Int(1)),
    ("bias", AttrDefault::Bool(true)),
    ("trainable", AttrDefault::Bool(true)),
];

pub const CONV1D: OpType = OpType {
    name: "conv1d",
    aliases: &[],
    keys: KEYS,
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm1d"),
    defaults: DEFAULTS,
    build: build_conv1d,
    summary: "1-D convolution (torch.nn.Conv1d) on N×C×L",
};

pub const CONV3D: OpType = OpType {
    name: "conv3d",
    aliases: &[],
    keys: KEYS,
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm3d"),
    defaults: DEFAULTS,
    build: build_conv3d,
    summary: "3-D convolution (torch.nn.Conv3d) on N×C×D×H×W",
};

pub const CONV_TRANSPOSE1D: OpType = OpType {
    name: "conv_transpose1d",
    aliases: &[],
    keys: TRANSPOSED_KEYS,
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm1d"),
    defaults: TRANSPOSED_DEFAULTS,
    build: build_deconv1d,
    summary: "1-D transposed convolution (torch.nn.ConvTranspose1d) on N×C×L",
};

pub const CONV_TRANSPOSE3D: OpType = OpType {
    name: "conv_transpose3d",
    aliases: &[],
    keys: TRANSPOSED_KEYS,
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm3d"),
    defaults: TRANSPOSED_DEFAULTS,
    build: build_deconv3d,
    summary: "3-D transposed convolution (torch.nn.ConvTranspose3d) on N×C×D×H×W",
};

fn build_conv1d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(common(a, 1, false)?))
}
fn build_conv3d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(common(a, 3, false)?))
}
fn build_deconv1d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(common(a, 1, true)?))
}
fn build_deconv3d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(common(a, 3, true)?))
}

/// A per-axis key: one number (every axis) or a list of `rank` values, each at least `min`
/// (1 for sizes, 0 for padding); `None` when absent.
pub(crate) fn axes_of(
    a: &mut Attrs,
    key: &str,
    rank: usize,
    min: u64,
) -> Result<Option<Axes>, Diagnostic> {
    let Some(v) = a.raw(key)? else {
        return Ok(None);
    };
    let one = |x: &crate::yaml::YNode| -> Result<u64, Diagnostic> {
        let i = attrs_int(x, key)?;
        u64::try_from(i).ok().filter(|&u| u >= min).ok_or_else(|| {
            Diagnostic::new(format!("`{key}` must be {} or more, got {i}", min))
                .at(&x.path)
                .help(if min == 0 {
                    "write 0 or a positive whole number"
                } else {
                    "write a positive whole number"
                })
        })
    };
    let names = (0..rank)
        .map(|ax| axis_name(rank, ax))
        .collect::<Vec<_>>()
        .join(", ");
    match &v.value {
        crate::yaml::YValue::Seq(items) if items.len() == rank => {
            let vals = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
            Ok(Axes::new(&vals))
        }
        crate::yaml::YValue::Seq(items) => Err(Diagnostic::new(format!(
            "`{key}` takes one number or a list of {rank} ([{names}]); got a list of {}",
            items.len()
        ))
        .at(&v.path)
        .help(format!(
            "write `{key}: 3` or `{key}: [{}]`",
            vec!["3"; rank].join(", ")
        ))),
        _ => Ok(Some(Axes::splat(rank, one(&v)?))),
    }
}

/// A required per-axis key ([`axes_of`] with values ≥ 1).
pub(crate) fn req_axes(
    a: &mut Attrs,
    key: &str,
    rank: usize,
    example: &str,
) -> Result<Axes, Diagnostic> {
    axes_of(a, key, rank, 1)?.ok_or_else(|| {
        Diagnostic::new(format!("{} needs `{key}`", a.op))
            .at(&a.node_path)
            .help(format!("add `{key}: {example}`"))
    })
}

/// A convolution over `kernel.rank()` spatial axes.
#[derive(Debug, Clone)]
pub struct ConvNd {
    transposed: bool,
    in_ch: u64,
    out_ch: u64,
    kernel: Axes,
    stride: Axes,
    pad_begin: Axes,
    pad_end: Axes,
    dilation: Axes,
    output_padding: Axes,
    groups: u64,
    bias: bool,
    trainable: bool,
    params: u64,
    padding_mode: PadMode,
}

/// Requires `N×C` and `rank` spatial axes, with a message naming the op.
pub(crate) fn need_rank(op: &str, s: &Shape, rank: usize) -> Result<(), Diagnostic> {
    if s.rank() == rank + 2 {
        return Ok(());
    }
    let want = match rank {
        1 => "N×C×L",
        2 => "N×C×H×W",
        _ => "N×C×D×H×W",
    };
    Err(Diagnostic::new(format!(
        "{op} needs an {want} input, got {s} (rank {})",
        s.rank()
    ))
    .help(match (rank, s.rank()) {
        (_, 2) => "this input is flat; put the layer before `flatten`, or use `linear`",
        (1, 4) => "this input is an image: use the 2-D layer (conv2d, maxpool2d, …)",
        (3, 4) => {
            "this input is an image: use the 2-D layer, or give a clip N×C×D×H×W (--input C×D×H×W)"
        }
        (2, 3) | (3, 3) => {
            "this input is a sequence N×C×L: use the 1-D layer (conv1d, maxpool1d, …)"
        }
        (2, 5) | (1, 5) => {
            "this input is a volume N×C×D×H×W: use the 3-D layer (conv3d, maxpool3d, …)"
        }
        _ => "check the layer before it",
    }))
}

/// A mode key's words and the enum value each names: parsed once, when the layer is built;
/// nothing compares a mode's word after that.
pub(super) fn mode_of<T: Copy>(
    a: &mut Attrs,
    key: &str,
    table: &[(&'static str, T)],
    default: T,
    default_name: &'static str,
) -> Result<T, Diagnostic> {
    let words: Vec<&'static str> = table.iter().map(|&(w, _)| w).collect();
    let word = a.choice(key, &words, default_name)?;
    Ok(table
        .iter()
        .find(|&&(w, _)| w == word)
        .map_or(default, |&(_, m)| m))
}

/// PyTorch's `padding_mode` words and the [`PadMode`] each names.
pub(super) const PAD_MODES: [(&str, PadMode); 4] = [
    ("zeros", PadMode::Zeros),
    ("reflect", PadMode::Reflect),
    ("replicate", PadMode::Replicate),
    ("circular", PadMode::Circular),
];

/// The word of a [`PadMode`], as written in `padding_mode:`.
pub(super) fn pad_mode_name(m: PadMode) -> &'static str {
    PAD_MODES
        .iter()
        .find(|&&(_, p)| p == m)
        .map_or("zeros", |&(w, _)| w)
}

/// A convolution's `padding_mode` (any rank): zeros, reflect, replicate or circular; always
/// zeros for a transposed one (PyTorch's only choice there, and not a key of those types).
pub(super) fn padding_mode(a: &mut Attrs, transposed: bool) -> Result<PadMode, Diagnostic> {
    if transposed {
        return Ok(PadMode::Zeros);
    }
    mode_of(a, "padding_mode", &PAD_MODES, PadMode::Zeros, "zeros")
}

/// PyTorch's limits on a padding mode (any rank): a reflection cannot reach past the opposite
/// edge (padding < size), a wrap-around not more than once (padding ≤ size).
pub(super) fn check_pad_limits(
    a: &Attrs,
    mode: PadMode,
    sizes: Axes,
    pad_begin: Axes,
    pad_end: Axes,
) -> Result<(), Diagnostic> {
    let rank = sizes.rank();
    for ax in 0..rank {
        let most = pad_begin[ax].max(pad_end[ax]);
        let bad = match mode {
            PadMode::Reflect => most >= sizes[ax],
            PadMode::Circular => most > sizes[ax],
            PadMode::Zeros | PadMode::Replicate => false,
        };
        if bad {
            let axis = axis_name(rank, ax);
            return Err(a
                .error(
                    "padding",
                    format!(
                        "`padding_mode: {}` pads the {axis} by {most}, but the input's {axis} is only {}",
                        pad_mode_name(mode),
                        sizes[ax]
                    ),
                )
                .help(if mode == PadMode::Reflect {
                    "reflect padding must be smaller than the input size (as in PyTorch); use a smaller padding or `padding_mode: replicate`"
                } else {
                    "circular padding can wrap around at most once (as in PyTorch); use a smaller padding"
                }));
        }
    }
    Ok(())
}

/// PyTorch's `padding: same` (any rank): per axis, total = dilation·(kernel − 1), the smaller
/// half first. Returns (before, after).
pub(super) fn same_padding(kernel: Axes, dilation: Axes) -> (Axes, Axes) {
    let rank = kernel.rank();
    let mut begin = Axes::splat(rank, 0);
    let mut end = Axes::splat(rank, 0);
    for ax in 0..rank {
        let total = dilation[ax].saturating_mul(kernel[ax] - 1);
        begin[ax] = total / 2;
        end[ax] = total - total / 2;
    }
    (begin, end)
}

/// A convolution's `groups` (any rank) must divide both channel counts.
pub(super) fn check_groups(
    a: &Attrs,
    in_ch: u64,
    out_ch: u64,
    groups: u64,
) -> Result<(), Diagnostic> {
    if in_ch.is_multiple_of(groups) && out_ch.is_multiple_of(groups) {
        return Ok(());
    }
    Err(a
        .error(
            "groups",
            format!("groups = {groups} must divide both the input channels ({in_ch}) and `out` ({out_ch})"),
        )
        .help(if groups == out_ch || groups > in_ch {
            format!("for a depthwise convolution write `groups: $in_ch` and `out: $in_ch` (here {in_ch})")
        } else {
            "choose a number of groups that divides both channel counts".to_string()
        }))
}

/// A transposed convolution's `output_padding` (any rank): smaller than the stride or the
/// dilation on each axis (PyTorch's rule).
pub(super) fn check_output_padding(
    a: &Attrs,
    output_padding: Axes,
    stride: Axes,
    dilation: Axes,
) -> Result<(), Diagnostic> {
    for ax in 0..output_padding.rank() {
        if output_padding[ax] >= stride[ax].max(dilation[ax]) {
            return Err(a.error(
                "output_padding",
                format!(
                    "output_padding {} must be smaller than the stride or the dilation ({} / {})",
                    output_padding[ax], stride[ax], dilation[ax]
                ),
            ));
        }
    }
    Ok(())
}

fn common(a: &mut Attrs, rank: usize, transposed: bool) -> Result<ConvNd, Diagnostic> {
    need_rank(a.op, a.input(), rank)?;
    let in_ch = a.input().0[1];
    let sizes = Axes::new(&a.input().0[2..]).expect("rank checked");
    let out_ch = a.req_positive("out", "64")?;
    let example = if rank == 1 { "3" } else { "[3, 3, 3]" };
    let kernel = req_axes(a, "kernel", rank, example)?;
    let stride = axes_of(a, "stride", rank, 1)?.unwrap_or(Axes::splat(rank, 1));
    let dilation = axes_of(a, "dilation", rank, 1)?.unwrap_or(Axes::splat(rank, 1));
    let groups = a.positive("groups")?.unwrap_or(1);
    let bias = a.bool("bias", true)?;
    let trainable = a.bool("trainable", true)?;
    let output_padding = if transposed {
        axes_of(a, "output_padding", rank, 0)?.unwrap_or(Axes::splat(rank, 0))
    } else {
        Axes::splat(rank, 0)
    };
    let padding_mode = padding_mode(a, transposed)?;
    let (pad_begin, pad_end) = match a.raw("padding")? {
        None => (Axes::splat(rank, 0), Axes::splat(rank, 0)),
        Some(v) => match v.as_str() {
            Some("valid") => (Axes::splat(rank, 0), Axes::splat(rank, 0)),
            Some("same") if !transposed => {
                if !stride.all(1) {
                    return Err(a
                        .error("padding", "`padding: same` needs stride 1 (as in PyTorch)")
                        .help("write the padding explicitly"));
                }
                same_padding(kernel, dilation)
            }
            _ => {
                let p = axes_of(a, "padding", rank, 0)?.expect("present");
                (p, p)
            }
        },
    };
    check_pad_limits(a, padding_mode, sizes, pad_begin, pad_end)?;
    check_groups(a, in_ch, out_ch, groups)?;
    if transposed {
        check_output_padding(a, output_padding, stride, dilation)?;
    }
    let taps = kernel.product().ok_or_else(super::overflow)?;
    let weights = mul(&[in_ch / groups, out_ch, taps])?;
    let params = add(&[weights, if bias { out_ch } else { 0 }])?;
    Ok(ConvNd {
        transposed,
        in_ch,
        out_ch,
        kernel,
        stride,
        pad_begin,
        pad_end,
        dilation,
        output_padding,
        groups,
        bias,
        trainable,
        params,
        padding_mode,
    })
}

impl ConvNd {
    fn rank(&self) -> usize {
        self.kernel.rank()
    }
    fn taps(&self) -> u64 {
        self.kernel.iter().product()
    }
    fn mode_name(&self) -> &'static str {
        pad_mode_name(self.padding_mode)
    }
}

/// Checked element count of a buffer a kernel allocates (`what`), against the executor's limit.
pub(crate) fn buffer_size(what: &str, factors: &[usize]) -> Result<usize, Diagnostic> {
    factors
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .filter(|&n| n <= crate::tensor::MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            Diagnostic::new(format!(
                "the convolution's {what} ({}) would have more than 2^32 elements, more than the executor allocates",
                factors
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("×")
            ))
            .help("run with a smaller --input, or a smaller kernel or padding")
        })
}

impl Op for ConvNd {
    fn op(&self) -> &'static str {
        match (self.transposed, self.rank()) {
            (false, 1) => "conv1d",
            (false, _) => "conv3d",
            (true, 1) => "conv_transpose1d",
            (true, _) => "conv_transpose3d",
        }
    }
    fn label(&self) -> String {
        let name = if self.transposed { "deconv" } else { "conv" };
        let mut s = format!("{name} {}", self.kernel.dims());
        if !self.stride.all(1) {
            s += &format!("/{}", self.stride.label());
        }
        if !self.pad_begin.all(0) || !self.pad_end.all(0) {
            if self.pad_begin == self.pad_end {
                s += &format!(" p{}", self.pad_begin.label());
            } else {
                s += &format!(" p{}+{}", self.pad_begin.dims(), self.pad_end.dims());
            }
            if self.padding_mode != PadMode::Zeros {
                s += &format!(" {}", self.mode_name());
            }
        }
        if !self.dilation.all(1) {
            s += &format!(" d{}", self.dilation.label());
        }
        if self.groups == self.in_ch && self.groups == self.out_ch && self.groups > 1 {
            s += " dw";
        } else if self.groups > 1 {
            s += &format!(" g{}", self.groups);
        }
        s + &format!(", {}", self.out_ch)
    }
    fn category(&self) -> Category {
        Category::Convolution
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        need_rank(self.op(), &inputs[0], self.rank())?;
        let mut out = vec![s[0], self.out_ch];
        for ax in 0..self.rank() {
            let r = if self.transposed {
                conv_transpose_out(
                    s[2 + ax],
                    self.kernel[ax],
                    self.stride[ax],
                    self.pad_begin[ax] + self.pad_end[ax],
                    self.dilation[ax],
                    self.output_padding[ax],
                )
            } else {
                conv_out(
                    s[2 + ax],
                    self.kernel[ax],
                    self.stride[ax],
                    self.pad_begin[ax],
                    self.pad_end[ax],
                    self.dilation[ax],
                )
            };
            out.push(r.map_err(|m| {
                Diagnostic::new(format!(
                    "{} on a {} input, along the {}: {m}",
                    self.op(),
                    Shape(s[2..].to_vec()),
                    axis_name(self.rank(), ax)
                ))
                .help("use a smaller kernel or more padding, or check the input size (--input)")
            })?);
        }
        Ok(vec![Shape(out)])
    }
    fn params(&self) -> Params {
        if self.trainable {
            Params {
                trainable: self.params,
                ..Default::default()
            }
        } else {
            Params {
                frozen: self.params,
                ..Default::default()
            }
        }
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // Regular: every output element accumulates (C_in/g)·taps products. Transposed (as
        // PyTorch's FlopCounterMode): every input element is scattered through a kernel into
        // C_out/g channels.
        let macs = if self.transposed {
            let x = &inputs[0];
            mul(&[x.numel()?, self.out_ch / self.groups, self.taps()])?
        } else {
            mul(&[outputs[0].numel()?, self.in_ch / self.groups, self.taps()])?
        };
        let bias = if self.bias {
            per_element(&outputs[0], 1)?
        } else {
            0
        };
        Ok(Cost {
            macs,
            flops: add(&[mul(&[2, macs])?, bias])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        if self.transposed {
            Geometry::Transposed {
                kernel: self.kernel,
                stride: self.stride,
                pad_begin: self.pad_begin,
                dilation: self.dilation,
            }
        } else {
            Geometry::Window {
                kernel: self.kernel,
                stride: self.stride,
                pad_begin: self.pad_begin,
                dilation: self.dilation,
            }
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(match (self.transposed, self.rank()) {
            (false, 1) => "Conv1d",
            (false, _) => "Conv3d",
            (true, 1) => "ConvTranspose1d",
            (true, _) => "ConvTranspose3d",
        })
    }
    fn weight_info(&self) -> Option<WeightInfo> {
        Some(WeightInfo {
            kind: if self.transposed {
                WeightedKind::Transposed
            } else {
                WeightedKind::Conv
            },
            in_ch: self.in_ch,
            out_ch: self.out_ch,
            kernel: self.kernel,
            stride: self.stride,
            pad_begin: self.pad_begin,
            pad_end: self.pad_end,
            dilation: self.dilation,
            groups: self.groups,
            bias: self.bias,
            trainable: self.trainable,
        })
    }
    fn window(&self) -> Option<Window> {
        (!self.transposed).then_some(Window {
            kernel: self.kernel,
            stride: self.stride,
            pad_begin: self.pad_begin,
            pad_end: self.pad_end,
            dilation: self.dilation,
            ceil: false,
        })
    }
}

impl Kernel for ConvNd {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        super::onnx::conv(
            e,
            &super::onnx::ConvForm {
                transposed: self.transposed,
                kernel: &self.kernel,
                stride: &self.stride,
                pad_begin: &self.pad_begin,
                pad_end: &self.pad_end,
                dilation: &self.dilation,
                output_padding: &self.output_padding,
                groups: self.groups,
                bias: self.bias,
                padding_mode: self.padding_mode,
            },
        )
    }
    fn collapsed(&self) -> Collapsed {
        // One input and one output channel, one group, no bias; window, stride, padding,
        // dilation and output padding kept; zero padding (docs/RECEPTIVE_FIELD.md).
        Collapsed::Layer(Box::new(ConvNd {
            in_ch: 1,
            out_ch: 1,
            groups: 1,
            bias: false,
            trainable: true,
            params: self.taps(),
            padding_mode: PadMode::Zeros,
            ..self.clone()
        }))
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let k: Vec<usize> = self.kernel.to_usize();
        let taps: usize = k.iter().product();
        let (cin, cout, g) = (
            self.in_ch as usize,
            self.out_ch as usize,
            self.groups as usize,
        );
        let kind = if self.trainable {
            WeightKind::Trainable
        } else {
            WeightKind::Frozen
        };
        let (mut shape, fan_in) = if self.transposed {
            let s = self.stride.iter().product::<u64>() as usize;
            (vec![cin, cout / g], (cin / g * taps / s.max(1)).max(1))
        } else {
            (vec![cout, cin / g], cin / g * taps)
        };
        shape.extend(&k);
        let mut w = vec![WeightSpec {
            name: "weight",
            shape,
            kind,
            init: Init::Kaiming { fan_in },
        }];
        if self.bias {
            w.push(WeightSpec {
                name: "bias",
                shape: vec![cout],
                kind,
                init: Init::Zeros,
            });
        }
        w
    }
    /// The padded input of a reflect/replicate/circular convolution, plus either the im2col
    /// buffers of the regular convolution ([`ConvPlan::workspace`] for one image and group on
    /// rayon's current thread count: one `C_in/g·taps × tile` buffer per thread at most, or
    /// one whole-image im2col for small images) or a transposed convolution's col2im buffer
    /// (`C_out/g · taps × input positions`): the buffers `forward` allocates, alive together.
    fn workspace(&self, inputs: &[Shape], outputs: &[Shape]) -> u64 {
        let (Some(x), Some(y)) = (inputs.first(), outputs.first()) else {
            return 0;
        };
        if x.rank() != self.rank() + 2 || y.rank() != self.rank() + 2 {
            return 0;
        }
        let m = |f: &[u64]| {
            f.iter()
                .try_fold(1u64, |a, &b| a.checked_mul(b))
                .unwrap_or(u64::MAX)
        };
        let spatial = &x.0[2..];
        let padded_sizes: Vec<u64> = spatial
            .iter()
            .enumerate()
            .map(|(a, &d)| d + self.pad_begin[a] + self.pad_end[a])
            .collect();
        let padded = if self.padding_mode == PadMode::Zeros {
            0
        } else {
            m(&[x.0[0], x.0[1], m(&padded_sizes)])
        };
        let g = self.groups.max(1);
        let cols = if self.transposed {
            m(&[self.out_ch / g, self.taps(), m(spatial)])
        } else {
            let usize_of = |v: &[u64]| -> Option<Vec<usize>> {
                v.iter().map(|&d| usize::try_from(d).ok()).collect()
            };
            let (pad, input) = if self.padding_mode == PadMode::Zeros {
                (self.pad_begin.to_usize(), usize_of(spatial))
            } else {
                (vec![0; self.rank()], usize_of(&padded_sizes))
            };
            match (input, usize_of(&y.0[2..])) {
                (Some(input), Some(output)) => {
                    let win = WindowNd::new(
                        &self.kernel.to_usize(),
                        &self.stride.to_usize(),
                        &pad,
                        &self.dilation.to_usize(),
                        &input,
                        &output,
                    );
                    let cg = (self.in_ch / g) as usize;
                    let og = (self.out_ch / g) as usize;
                    ConvPlan::new(cg, &win, og, rayon::current_num_threads()).workspace(cg, &win)
                        as u64
                }
                _ => u64::MAX,
            }
        };
        padded.saturating_add(cols)
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let dims = super::out_dims(self, inputs)?.remove(0);
        let rank = self.rank();
        let x0 = inputs[0];
        let (n, cin) = (x0.shape[0], x0.shape[1]);
        let padded;
        let (x, pad): (&[f32], Vec<usize>) = if self.padding_mode == PadMode::Zeros {
            (&x0.data, self.pad_begin.to_usize())
        } else {
            let vol = crate::kernels_nd::lift(&x0.shape[2..], 1);
            let before = crate::kernels_nd::lift(&self.pad_begin.to_usize(), 0);
            let after = crate::kernels_nd::lift(&self.pad_end.to_usize(), 0);
            let pv: Vec<usize> = (0..3).map(|a| vol[a] + before[a] + after[a]).collect();
            buffer_size("padded input", &[n, cin, pv[0], pv[1], pv[2]])?;
            padded = pad_nd(&x0.data, n * cin, vol, before, after, self.padding_mode);
            (&padded, vec![0; rank])
        };
        let in_sizes: Vec<usize> = if self.padding_mode == PadMode::Zeros {
            x0.shape[2..].to_vec()
        } else {
            (0..rank)
                .map(|a| x0.shape[2 + a] + (self.pad_begin[a] + self.pad_end[a]) as usize)
                .collect()
        };
        let out_sizes = &dims[2..];
        let cout = dims[1];
        let g = self.groups as usize;
        let (cg, og) = (cin / g, cout / g);
        let (ivol, ovol): (usize, usize) = (in_sizes.iter().product(), out_sizes.iter().product());
        let k = self.kernel.to_usize();
        let stride = self.stride.to_usize();
        let dil = self.dilation.to_usize();
        let wt = &weights[0].data;
        let bias = weights.get(1).map(|t| &t.data[..]);
        if self.transposed {
            // The window of the equivalent regular convolution: it reads the (large) output
            // and writes the (small) input; col2im scatters into the output.
            let win = WindowNd::new(&k, &stride, &pad, &dil, out_sizes, &in_sizes);
            let rows = og * win.taps();
            buffer_size("col2im buffer", &[rows, ivol])?;
            let mut out = Tensor::zeros(&dims);
            let mut cols = Vec::new();
            for b in 0..n {
                for gi in 0..g {
                    let xg = &x[(b * cin + gi * cg) * ivol..(b * cin + (gi + 1) * cg) * ivol];
                    let wg = &wt[gi * cg * rows..(gi + 1) * cg * rows];
                    let dst = &mut out.data
                        [(b * cout + gi * og) * ovol..(b * cout + (gi + 1) * og) * ovol];
                    ctx.macs += conv_transpose_nd(xg, cg, &win, wg, og, &mut cols, dst);
                }
            }
            if let Some(bias) = bias {
                out.data
                    .par_chunks_mut(ovol.max(1))
                    .enumerate()
                    .for_each(|(bc, dst)| {
                        let v = bias[bc % cout];
                        dst.iter_mut().for_each(|d| *d += v);
                    });
            }
            return Ok(vec![out]);
        }
        let win = WindowNd::new(&k, &stride, &pad, &dil, &in_sizes, out_sizes);
        let epi = ctx.epilogue.take_act();
        let mut out = ctx.output(&dims);
        let kk = cg * win.taps();
        for b in 0..n {
            for gi in 0..g {
                let xg = &x[(b * cin + gi * cg) * ivol..(b * cin + (gi + 1) * cg) * ivol];
                let wg = &wt[gi * og * kk..(gi + 1) * og * kk];
                let bg = bias.map(|v| &v[gi * og..(gi + 1) * og]);
                let dst =
                    &mut out.data[(b * cout + gi * og) * ovol..(b * cout + (gi + 1) * og) * ovol];
                ctx.macs += conv_nd(xg, cg, &win, wg, og, bg, epi, dst);
            }
        }
        Ok(vec![out])
    }
    fn fold_affine(&self, weights: &[Tensor], scale: &[f32], shift: &[f32]) -> Option<Vec<Tensor>> {
        fold_channel_affine(self.out_ch, self.transposed, weights, scale, shift)
    }
}

/// A (transposed) convolution of any rank with a per-output-channel affine `y·scale + shift`
/// folded in: each output channel's filter scaled, its bias shifted (a bias is made when there
/// is none). `None` for a transposed convolution (its layout puts the output channel on axis
/// 1) or a mismatched `scale`.
pub(super) fn fold_channel_affine(
    out_ch: u64,
    transposed: bool,
    weights: &[Tensor],
    scale: &[f32],
    shift: &[f32],
) -> Option<Vec<Tensor>> {
    // y·s + t with y = W·x + b: scale each output channel's filter, shift its bias.
    let cout = out_ch as usize;
    if scale.len() != cout || transposed {
        return None;
    }
    let mut w = weights[0].clone();
    let per = w.numel() / cout;
    for (o, chunk) in w.data.chunks_mut(per).enumerate() {
        chunk.iter_mut().for_each(|v| *v *= scale[o]);
    }
    let b: Vec<f32> = (0..cout)
        .map(|o| weights.get(1).map_or(0.0, |t| t.data[o]) * scale[o] + shift[o])
        .collect();
    Some(vec![w, Tensor::new(vec![cout], b)])
}

/// What profiler `c` charges a (transposed) convolution of any rank with `macs` MACs, output
/// `y`, `in_per_group` input channels per group, `taps` kernel taps and `params` weights and
/// biases (docs/COUNTING.md).
pub(super) fn conv_convention(
    c: Convention,
    macs: u64,
    y: &Shape,
    bias: bool,
    in_per_group: u64,
    taps: u64,
    params: u64,
) -> Result<u64, Diagnostic> {
    let bias = if bias { y.numel()? } else { 0 };
    match c {
        // fvcore: batch · prod(weight shape) · prod(output spatial), or of the input spatial
        // size when transposed — the MACs either way.
        Convention::Torchvision | Convention::Fvcore => Ok(macs),
        // ptflops: the same product (input positions when transposed) plus one per output
        // element for a bias.
        Convention::Ptflops => add(&[macs, bias]),
        // thop: numel(output) · C_in/groups · prod(kernel), transposed or not.
        Convention::Thop => mul(&[y.numel()?, in_per_group, taps]),
        // torchinfo: every weight and bias element times N · prod(output spatial).
        Convention::Torchinfo => {
            let mut f = vec![params, y.0[0]];
            f.extend(&y.0[2..]);
            mul(&f)
        }
    }
}

impl Counting for ConvNd {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        conv_convention(
            c,
            self.cost(inputs, outputs)?.macs,
            &outputs[0],
            self.bias,
            self.in_ch / self.groups,
            self.taps(),
            self.params,
        )
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        super::weighted_training(
            self.cost(inputs, outputs)?,
            outputs,
            input_grad,
            self.trainable,
            self.bias,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build;

    #[test]
    fn shapes_params_and_macs() {
        // R3D-18's stem: Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False) on
        // 1×3×16×112×112 → 1×64×16×56×56; 3·64·147 = 28,224 weights; MACs = 64·16·56·56 ·
        // 3·147 = 1,416,167,424.
        let (l, o) = build(
            "conv3d",
            "{out: 64, kernel: [3, 7, 7], stride: [1, 2, 2], padding: [1, 3, 3], bias: false}",
            &[&[1, 3, 16, 112, 112]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 64, 16, 56, 56]);
        assert_eq!(l.params().trainable, 28_224);
        let c = l.cost(&[Shape(vec![1, 3, 16, 112, 112])], &o).unwrap();
        assert_eq!(c.macs, 64 * 16 * 56 * 56 * 3 * 147);
        assert_eq!(l.label(), "conv 3×7×7/1×2×2 p1×3×3, 64");
        assert_eq!(l.torch_type(), Some("Conv3d"));
        // Wav2Letter's front end: Conv1d(1, 250, 250, stride 160, padding 45) on 1×1×16000:
        // ⌊(16000 + 90 − 250)/160⌋ + 1 = 100 frames; 250·250 + 250 parameters.
        let (l, o) = build(
            "conv1d",
            "{out: 250, kernel: 250, stride: 160, padding: 45}",
            &[&[1, 1, 16000]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 250, 100]);
        assert_eq!(l.params().trainable, 62_750);
        assert_eq!(l.label(), "conv 250/160 p45, 250");
        // `same` on an even kernel: total 3, 1 before and 2 after (PyTorch).
        let (_, o) = build(
            "conv1d",
            "{out: 2, kernel: 4, padding: same}",
            &[&[1, 1, 10]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 2, 10]);
        // Transposed 3-D: (4−1)·2 − 2 + 3 + 1 = 8 per axis.
        let (l, o) = build(
            "conv_transpose3d",
            "{out: 4, kernel: 3, stride: 2, padding: 1, output_padding: 1}",
            &[&[1, 2, 4, 4, 4]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 4, 8, 8, 8]);
        // MACs: every input element · C_out · 27.
        let c = l.cost(&[Shape(vec![1, 2, 4, 4, 4])], &o).unwrap();
        assert_eq!(c.macs, 2 * 64 * 4 * 27);
    }

    #[test]
    fn bad_input_is_explained() {
        let e = build("conv3d", "{out: 4, kernel: 3}", &[&[1, 3, 32, 32]]).unwrap_err();
        assert!(e.message.contains("needs an N×C×D×H×W input"), "{e}");
        assert!(e.help.unwrap().contains("use the 2-D layer"));
        let e = build("conv1d", "{out: 4, kernel: [3, 3]}", &[&[1, 3, 32]]).unwrap_err();
        assert!(e.message.contains("list of 2"), "{e}");
        let e = build(
            "conv1d",
            "{out: 4, kernel: 3, padding: 5, padding_mode: reflect}",
            &[&[1, 3, 5]],
        )
        .unwrap_err();
        assert!(e.message.contains("pads the length by 5"), "{e}");
        let e = build("conv1d", "{out: 4, kernel: 9}", &[&[1, 3, 5]]).unwrap_err();
        assert!(e.message.contains("along the length"), "{e}");
    }
}
