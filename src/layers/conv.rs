//! Convolution and transposed convolution, with PyTorch's options: stride, padding (symmetric,
//! asymmetric, `same`, `valid`), dilation, groups (depthwise included), bias, output_padding.

use super::attrs::{Pad4, PaddingSpec};
use super::conv_nd::{
    check_groups, check_output_padding, check_pad_limits, pad_mode_name, padding_mode,
    same_padding, DEFAULTS, TRANSPOSED_DEFAULTS,
};
use super::Convention;
use super::{
    add, mul, need_4d, pair_label, per_element, Arity, Attrs, Category, Collapsed, Cost, Counting,
    Geometry, Kernel, Layer, Op, OpType, Params, Shape, Training, WeightInfo, WeightedKind, Window,
};
use crate::error::Diagnostic;
use crate::geometry::{conv_out, conv_transpose_out, Axes};
use crate::kernels::blocked;
use crate::kernels::depthwise as dw;
use crate::kernels::Ctx;
use crate::kernels::{col2im, conv_gemm, conv_winograd, matmul, vectorised, Window2d};
use crate::kernels_nd::PadMode;
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};
use rayon::prelude::*;

pub const CONV2D: OpType = OpType {
    name: "conv2d",
    aliases: &["conv"],
    keys: &[
        "out",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
        "padding_mode",
        "trainable",
        "weight_values",
        "bias_values",
    ],
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm2d"),
    defaults: DEFAULTS,
    build: build_conv,
    summary: "2-D convolution (torch.nn.Conv2d)",
};

pub const CONV_TRANSPOSE2D: OpType = OpType {
    name: "conv_transpose2d",
    aliases: &["deconv", "conv_transpose"],
    keys: &[
        "out",
        "kernel",
        "stride",
        "padding",
        "output_padding",
        "dilation",
        "groups",
        "bias",
        "trainable",
    ],
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm2d"),
    defaults: TRANSPOSED_DEFAULTS,
    build: build_deconv,
    summary: "2-D transposed convolution (torch.nn.ConvTranspose2d)",
};

#[derive(Debug)]
pub struct Conv2d {
    transposed: bool,
    in_ch: u64,
    out_ch: u64,
    kernel: [u64; 2],
    stride: [u64; 2],
    pad: Pad4,
    dilation: [u64; 2],
    output_padding: [u64; 2],
    groups: u64,
    bias: bool,
    trainable: bool,
    params: u64,
    /// Fixed initial values (`weight_values`, `bias_values`), PyTorch layout, row-major.
    fixed: [Option<Vec<f32>>; 2],
    /// PyTorch's `padding_mode`: zeros, reflect, replicate or circular.
    padding_mode: PadMode,
}

fn common(a: &mut Attrs, transposed: bool) -> Result<Conv2d, Diagnostic> {
    let op = a.op;
    need_4d(op, a.input())?;
    let in_ch = a.input().0[1];
    let out_ch = a.req_positive("out", "64")?;
    let kernel = a.req_pair("kernel", "3")?;
    let stride = a.pair("stride")?.unwrap_or([1, 1]);
    let dilation = a.pair("dilation")?.unwrap_or([1, 1]);
    let groups = a.positive("groups")?.unwrap_or(1);
    let bias = a.bool("bias", true)?;
    let trainable = a.bool("trainable", true)?;
    let output_padding = if transposed {
        a.pair0("output_padding")?.unwrap_or([0, 0])
    } else {
        [0, 0]
    };
    let padding_mode = padding_mode(a, transposed)?;
    let pad = match a.padding("padding", !transposed)? {
        PaddingSpec::Explicit(p) => p,
        PaddingSpec::Same => {
            if stride != [1, 1] {
                return Err(a
                    .error("padding", "`padding: same` needs stride 1 (as in PyTorch)")
                    .help("write the padding explicitly, e.g. [top, left, bottom, right] for TensorFlow-style same padding"));
            }
            let (begin, end) = same_padding(Axes::from(kernel), Axes::from(dilation));
            Pad4 {
                top: begin[0],
                left: begin[1],
                bottom: end[0],
                right: end[1],
            }
        }
    };
    let sizes = Axes::from([a.input().0[2], a.input().0[3]]);
    check_pad_limits(
        a,
        padding_mode,
        sizes,
        Axes::from([pad.top, pad.left]),
        Axes::from([pad.bottom, pad.right]),
    )?;
    check_groups(a, in_ch, out_ch, groups)?;
    if transposed {
        check_output_padding(
            a,
            Axes::from(output_padding),
            Axes::from(stride),
            Axes::from(dilation),
        )?;
    }
    let kk = mul(&[kernel[0], kernel[1]])?;
    let weights = mul(&[in_ch / groups, out_ch, kk])?;
    let params = add(&[weights, if bias { out_ch } else { 0 }])?;
    let mut fixed = [None, None];
    for (slot, key, want) in [
        (0, "weight_values", weights),
        (1, "bias_values", if bias { out_ch } else { 0 }),
    ] {
        if let Some(v) = a.float_list(key)? {
            if v.len() as u64 != want {
                return Err(a.error(
                    key,
                    format!(
                        "`{key}` has {} values; this layer has {want} (PyTorch layout, row-major)",
                        v.len()
                    ),
                ));
            }
            fixed[slot] = Some(v.into_iter().map(|x| x as f32).collect());
        }
    }
    Ok(Conv2d {
        transposed,
        in_ch,
        out_ch,
        kernel,
        stride,
        pad,
        dilation,
        output_padding,
        groups,
        bias,
        trainable,
        params,
        fixed,
        padding_mode,
    })
}

/// The smallest output plane (positions, 13×13) the blocked direct kernel runs on.
const BLOCKED_MIN_PLANE: usize = 169;

/// The smallest output plane (positions) Winograd runs on; smaller maps use the product.
const WINOGRAD_MIN_PLANE: usize = 100;

impl Conv2d {
    /// Whether the forward pass runs the blocked direct kernel (`kernels::blocked`) from
    /// `cin` to `cout` channels on an `oh × ow` output, on filter panels the inference plan
    /// packs (`Kernel::prepare`): the one rule both read. Ungrouped, not transposed, not
    /// Winograd's, not the 1×1 window, horizontal stride 1 or 2, and the shapes where it
    /// measured faster than the path it replaces (docs/PERFORMANCE.md, "sixth pass").
    fn blocked_on(&self, cin: usize, cout: usize, [oh, ow]: [usize; 2]) -> bool {
        let n = oh.saturating_mul(ow);
        // Measured (one thread, `examples/bench_blocked.rs`): faster than the implicit
        // product on stride-1 3×3 layers from 13×13 maps up (7×7: slower, the row's 7 pixels
        // being a block of 6 and one of 1), on the strided 3×3s and as fast on the 7×7/2
        // stem; slower than im2col and `gemm` on GoogLeNet's conv3 (64 → 192 on 56×56), even
        // on VGG-16's 64 → 64 on 224×224: so not past 56×56, nor past 128 output channels on
        // maps larger than 28×28, unless strided or wider than 3×3 (the stems). Square
        // kernels only: inception_v3's 1×7 and 7×1 were not measured (its 5×5, 48 → 64 on
        // 35×35: 77.0 against 66.8). Seventh pass, timed in CPU time (those figures were wall
        // time under load, where a trial of milliseconds is preempted): from 64 input channels
        // a 3×3 is as fast or faster on any map — VGG-16's 112×112 layers 69–73 against 55–58
        // GMAC/s, its 64 → 64 on 224×224 64 against 60, GoogLeNet's conv3 even, Inception-v3's
        // 80 → 192 on 71×71 63 against 61 — but with 32 it is not (32 → 64 on 147×147: 45
        // against 62).
        let wide = cin >= 64 && self.kernel[0] <= 3;
        let stem = self.stride != [1, 1] || self.kernel[0] * self.kernel[1] > 9;
        // Kernels up to 7×7 (the largest measured).
        let measured = self.kernel[0] <= 7;
        !self.transposed
            && self.groups == 1
            && self.kernel != [1, 1]
            && self.kernel[0] == self.kernel[1]
            && matches!(self.stride[1], 1 | 2)
            && blocked::available()
            && !self.winograd_on(cin, cout, [oh, ow])
            && measured
            && n >= BLOCKED_MIN_PLANE
            && (stem || wide || (n <= 3136 && (cout <= 128 || n <= 784)))
    }

    /// Whether the inference plan prepares this convolution for Winograd F(2×2, 3×3) (it
    /// runs it on maps of at least [`WINOGRAD_MIN_PLANE`] positions).
    fn winograd(&self) -> bool {
        !self.transposed
            && self.kernel == [3, 3]
            && self.stride == [1, 1]
            && self.dilation == [1, 1]
            && self.groups == 1
            && self.padding_mode == PadMode::Zeros
            // Measured on VGG-16 and ResNet-50 (docs/PERFORMANCE.md): with fewer channels
            // (larger images) the transforms cost more than the multiplications saved.
            && self.in_ch >= 256
            && self.out_ch >= 256
    }

    /// Whether the forward pass runs Winograd (when the plan prepared it, [`Conv2d::winograd`])
    /// from `cin` to `cout` channels on an `oh × ow` output: the one rule that both
    /// `Kernel::prepare` (which makes the transformed filters only for such a layer) and the
    /// forward pass read.
    fn winograd_on(&self, cin: usize, cout: usize, [oh, ow]: [usize; 2]) -> bool {
        // A block of Winograd holds at least one tile row of 16·(C_in + C_out) values per
        // tile: past a sane size (absurdly wide images) the direct kernel, whose buffers
        // are checked, runs instead.
        let block_floats = 16usize
            .saturating_mul(cin.saturating_add(cout))
            .saturating_mul(ow.div_ceil(2));
        // Small maps (resnet50's 7×7 layer4): a block of 2×2 tiles is too small to
        // amortise the transformed filters (16/9 of the weights, read per pass), and the
        // implicit im2col product is faster (`examples/bench_conv.rs`: 512 → 512 on 7×7,
        // 29 against 74 GMAC/s on one thread; 256 → 256 on 14×14, 108 against 84).
        self.winograd() && block_floats <= 1 << 26 && oh.saturating_mul(ow) >= WINOGRAD_MIN_PLANE
    }
}

fn build_conv(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(common(a, false)?))
}

fn build_deconv(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(common(a, true)?))
}

impl Op for Conv2d {
    fn op(&self) -> &'static str {
        if self.transposed {
            "conv_transpose2d"
        } else {
            "conv2d"
        }
    }
    fn label(&self) -> String {
        let name = if self.transposed { "deconv" } else { "conv" };
        let mut s = format!("{name} {}×{}", self.kernel[0], self.kernel[1]);
        if self.stride != [1, 1] {
            s += &format!("/{}", pair_label(self.stride));
        }
        if self.pad != Pad4::default() {
            s += &format!(" p{}", self.pad.label());
            if self.padding_mode != PadMode::Zeros {
                s += &format!(" {}", pad_mode_name(self.padding_mode));
            }
        }
        if self.dilation != [1, 1] {
            s += &format!(" d{}", pair_label(self.dilation));
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
        let mut hw = [0u64; 2];
        let pads = [
            (self.pad.top, self.pad.bottom),
            (self.pad.left, self.pad.right),
        ];
        for ax in 0..2 {
            let r = if self.transposed {
                conv_transpose_out(
                    s[2 + ax],
                    self.kernel[ax],
                    self.stride[ax],
                    pads[ax].0 + pads[ax].1,
                    self.dilation[ax],
                    self.output_padding[ax],
                )
            } else {
                conv_out(
                    s[2 + ax],
                    self.kernel[ax],
                    self.stride[ax],
                    pads[ax].0,
                    pads[ax].1,
                    self.dilation[ax],
                )
            };
            hw[ax] = r.map_err(|m| {
                Diagnostic::new(format!("{} on a {}×{} input: {m}", self.op(), s[2], s[3]))
                    .help("use a smaller kernel or more padding, or check the input size (--input)")
            })?;
        }
        Ok(vec![Shape(vec![s[0], self.out_ch, hw[0], hw[1]])])
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
        let kk = self.kernel[0] * self.kernel[1];
        // Regular: every output element accumulates (C_in/g)·kh·kw products. Transposed (as
        // PyTorch's FlopCounterMode): every input element is scattered through a kernel into
        // C_out/g channels.
        let macs = if self.transposed {
            let x = &inputs[0].0;
            mul(&[x[0], x[2], x[3], self.in_ch, self.out_ch / self.groups, kk])?
        } else {
            mul(&[outputs[0].numel()?, self.in_ch / self.groups, kk])?
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
        let pad_begin = [self.pad.top, self.pad.left];
        if self.transposed {
            Geometry::Transposed {
                kernel: self.kernel.into(),
                stride: self.stride.into(),
                pad_begin: pad_begin.into(),
                dilation: self.dilation.into(),
            }
        } else {
            Geometry::Window {
                kernel: self.kernel.into(),
                stride: self.stride.into(),
                pad_begin: pad_begin.into(),
                dilation: self.dilation.into(),
            }
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(if self.transposed {
            "ConvTranspose2d"
        } else {
            "Conv2d"
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
            kernel: self.kernel.into(),
            stride: self.stride.into(),
            pad_begin: [self.pad.top, self.pad.left].into(),
            pad_end: [self.pad.bottom, self.pad.right].into(),
            dilation: self.dilation.into(),
            groups: self.groups,
            bias: self.bias,
            trainable: self.trainable,
        })
    }
    fn window(&self) -> Option<Window> {
        (!self.transposed).then_some(Window {
            kernel: self.kernel.into(),
            stride: self.stride.into(),
            pad_begin: [self.pad.top, self.pad.left].into(),
            pad_end: [self.pad.bottom, self.pad.right].into(),
            dilation: self.dilation.into(),
            ceil: false,
        })
    }
}

impl Kernel for Conv2d {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        super::onnx::conv(
            e,
            &super::onnx::ConvForm {
                transposed: self.transposed,
                kernel: &self.kernel,
                stride: &self.stride,
                pad_begin: &[self.pad.top, self.pad.left],
                pad_end: &[self.pad.bottom, self.pad.right],
                dilation: &self.dilation,
                output_padding: &self.output_padding,
                groups: self.groups,
                bias: self.bias,
                padding_mode: self.padding_mode,
            },
        )
    }
    /// The padded input of a reflect/replicate/circular convolution, plus one im2col buffer
    /// of an image and group (taps × output positions), or a transposed convolution's col2im
    /// buffer (output taps × input positions): the sizes `forward` checks before allocating.
    fn workspace(&self, inputs: &[Shape], outputs: &[Shape]) -> u64 {
        let (Some(x), Some(y)) = (inputs.first(), outputs.first()) else {
            return 0;
        };
        let mul = |f: &[u64]| {
            f.iter()
                .try_fold(1u64, |a, &b| a.checked_mul(b))
                .unwrap_or(u64::MAX)
        };
        let [kh, kw] = self.kernel;
        let g = self.groups.max(1);
        match (&x.0[..], &y.0[..]) {
            ([n, c, h, w], [_, o, oh, ow]) => {
                let padded = if self.padding_mode == PadMode::Zeros || self.transposed {
                    0
                } else {
                    mul(&[
                        *n,
                        *c,
                        h + self.pad.top + self.pad.bottom,
                        w + self.pad.left + self.pad.right,
                    ])
                };
                let cols = if self.transposed {
                    mul(&[o / g, kh, kw, *h, *w])
                } else if g == *c && *o == g {
                    // Depthwise: the direct kernel, no im2col. At stride 1 it copies a plane
                    // into a zero-padded one of `(oh + (kh−1)·dy) × (ow + (kw−1)·dx)` plus an
                    // accumulator of `oh` such rows, unless that would be over four times the
                    // planes (`depthwise_plane` then runs row by row, with no buffer).
                    let [dy, dx] = self.dilation;
                    let hp = oh.saturating_add((kh - 1).saturating_mul(dy));
                    let wp = ow.saturating_add((kw - 1).saturating_mul(dx));
                    let plane = hp.saturating_mul(wp);
                    let bounded =
                        plane <= (h * w).max(oh * ow).saturating_mul(4).saturating_add(4096);
                    // From 16 channels: `kernels::depthwise`'s band of sixteen channels (at
                    // most `DEPTHWISE_BAND_LIMIT` floats, else the plane kernel runs).
                    let usz = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
                    let win = Window2d {
                        kernel: [usz(kh), usz(kw)],
                        stride: [usz(self.stride[0]), usz(self.stride[1])],
                        pad: [usz(self.pad.top), usz(self.pad.left)],
                        dilation: [usz(dy), usz(dx)],
                        input: [usz(*h), usz(*w)],
                        output: [usz(*oh), usz(*ow)],
                    };
                    let band = if *c >= dw::LANES as u64 {
                        dw::plan(&win, DEPTHWISE_BAND_LIMIT).map_or(0, |(_, f)| f as u64)
                    } else {
                        0
                    };
                    let per_plane = if self.stride == [1, 1] && bounded {
                        plane.saturating_add(oh.saturating_mul(wp))
                    } else if let Some(phases) = depthwise_phases(
                        [*h as usize, *w as usize],
                        [*oh as usize, *ow as usize],
                        [kh as usize, kw as usize],
                        [self.stride[0] as usize, self.stride[1] as usize],
                        self.dilation,
                    ) {
                        phases.floats() as u64
                    } else {
                        0
                    };
                    per_plane.max(band)
                } else {
                    mul(&[c / g, kh, kw, *oh, *ow])
                };
                padded.saturating_add(cols)
            }
            _ => 0,
        }
    }
    fn collapsed(&self) -> Collapsed {
        // One input and one output channel, one group (depthwise and grouped convolutions
        // included), no bias; window, stride, padding, dilation and output padding kept.
        Collapsed::Layer(Box::new(Conv2d {
            in_ch: 1,
            out_ch: 1,
            groups: 1,
            bias: false,
            trainable: true,
            params: self.kernel[0] * self.kernel[1],
            fixed: [None, None],
            // The fields are those of zero padding (docs/RECEPTIVE_FIELD.md): mirrored, clamped
            // or wrapped border pixels are not counted.
            padding_mode: PadMode::Zeros,
            ..*self
        }))
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let [kh, kw] = [self.kernel[0] as usize, self.kernel[1] as usize];
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
        let (shape, fan_in) = if self.transposed {
            // Each output receives about (C_in/g)·kh·kw/(sh·sw) contributions.
            let s = (self.stride[0] * self.stride[1]) as usize;
            (vec![cin, cout / g, kh, kw], (cin / g * kh * kw / s).max(1))
        } else {
            (vec![cout, cin / g, kh, kw], cin / g * kh * kw)
        };
        let fixed = |i: usize, default: Init| self.fixed[i].clone().map_or(default, Init::Fixed);
        let mut w = vec![WeightSpec {
            name: "weight",
            shape,
            kind,
            init: fixed(0, Init::Kaiming { fan_in }),
        }];
        if self.bias {
            w.push(WeightSpec {
                name: "bias",
                shape: vec![cout],
                kind,
                init: fixed(1, Init::Zeros),
            });
        }
        w
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let dims = super::out_dims(self, inputs)?.remove(0);
        // Reflect / replicate / circular padding: the padded input is built explicitly, then
        // convolved without padding.
        let padded;
        let (x, pad) = if self.padding_mode == PadMode::Zeros {
            (inputs[0], [self.pad.top as usize, self.pad.left as usize])
        } else {
            padded = pad_input(inputs[0], self.pad, self.padding_mode)?;
            (&padded, [0, 0])
        };
        // Transposed: the scatter adds into zeros; otherwise every element is written, into
        // the plan's view when it gives one (`Ctx::into`: this layer's channels of a
        // concatenation), else into an output of its own.
        let view = if self.transposed {
            None
        } else {
            ctx.into.take()
        };
        let mut out = if self.transposed {
            Tensor::zeros(&dims)
        } else if view.is_some() {
            crate::kernels::OutView::placeholder(&dims)
        } else {
            ctx.output(&dims)
        };
        let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let (cout, oh, ow) = (dims[1], dims[2], dims[3]);
        let g = self.groups as usize;
        let (cg, og) = (cin / g, cout / g);
        let [kh, kw] = [self.kernel[0] as usize, self.kernel[1] as usize];
        let wt = &weights[0].data;
        let k = cg * kh * kw;
        if self.transposed {
            // cols (og·kh·kw × H·W) = W_gᵀ · X_g, then scattered into the output.
            let win = Window2d {
                kernel: [kh, kw],
                stride: [self.stride[0] as usize, self.stride[1] as usize],
                pad: [self.pad.top as usize, self.pad.left as usize],
                dilation: [self.dilation[0] as usize, self.dilation[1] as usize],
                input: [oh, ow],
                output: [h, w],
            };
            let rows = og * kh * kw;
            let mut cols = vec![0.0f32; scratch(&[rows, h, w])?];
            for b in 0..n {
                for gi in 0..g {
                    let xg =
                        &x.data[(b * cin + gi * cg) * h * w..(b * cin + (gi + 1) * cg) * h * w];
                    let wg = &wt[gi * cg * rows..(gi + 1) * cg * rows];
                    ctx.macs +=
                        matmul(rows, h * w, cg, wg, 1, rows, xg, h * w, 1, &mut cols, false);
                    let dst = &mut out.data
                        [(b * cout + gi * og) * oh * ow..(b * cout + (gi + 1) * og) * oh * ow];
                    col2im(&cols, og, &win, dst);
                }
            }
        } else {
            let win = Window2d {
                kernel: [kh, kw],
                stride: [self.stride[0] as usize, self.stride[1] as usize],
                pad,
                dilation: [self.dilation[0] as usize, self.dilation[1] as usize],
                input: [h, w],
                output: [oh, ow],
            };
            let plane = oh * ow;
            // Each sample's output: `cout` planes, contiguous.
            let samples: Vec<&mut [f32]> = match view {
                Some(v) => v.samples(cout * plane),
                None => out.data.chunks_mut(cout * plane).collect(),
            };
            if let (Some(u), true) = (weights.get(2), self.winograd_on(cin, cout, [oh, ow])) {
                // Prepared by the inference plan (`Kernel::prepare`): Winograd F(2×2, 3×3).
                let bias = weights.get(1).map(|t| &t.data[..]);
                // The activation alone: a residual (with the activation after it) is added by
                // the executor in one sequential pass (see below, the tiled product).
                let epi = ctx.epilogue.take_act();
                for (b, dst) in samples.into_iter().enumerate() {
                    ctx.macs += conv_winograd(
                        &x.data[b * cin * h * w..(b + 1) * cin * h * w],
                        cin,
                        [h, w],
                        pad,
                        &u.data,
                        cout,
                        [oh, ow],
                        bias,
                        epi,
                        dst,
                    );
                }
                return Ok(vec![out]);
            }
            if (h, w, oh, ow, kh, kw) == (1, 1, 1, 1, 1, 1) && pad == [0, 0] {
                // A 1×1 map (squeeze-and-excitation gates' two products, after the global
                // pool): per image and group a matrix-vector product, `y = W_g · x_g`, then the
                // bias and the fused activation over the few outputs. The tiled convolution's
                // set-up cost 5–35 µs per such layer for a few thousand multiply-adds.
                let bias = weights.get(1).map(|t| &t.data[..]);
                let epi = ctx.epilogue.take_act();
                for (b, dst) in samples.into_iter().enumerate() {
                    for gi in 0..g {
                        let xg = &x.data[b * cin + gi * cg..b * cin + (gi + 1) * cg];
                        let y = &mut dst[gi * og..(gi + 1) * og];
                        ctx.macs += crate::kernels::matvec(&wt[gi * og * cg..], xg, y);
                    }
                    if let Some(bias) = bias {
                        dst.iter_mut().zip(bias).for_each(|(d, &v)| *d += v);
                    }
                    if let Some(e) = epi {
                        e.apply(dst);
                    }
                }
                return Ok(vec![out]);
            }
            if g == cin && og == 1 {
                // Depthwise: a direct kernel per channel (a GEMM per channel would be tiny),
                // finished (bias, fused activation) plane by plane.
                let bias = weights.get(1).map(|t| &t.data[..]);
                let epi = ctx.epilogue.take_act();
                // Every output accumulates kh·kw taps (padded ones multiply zero), as counted.
                ctx.macs += (n * cin * plane * kh * kw) as u64;
                if cin >= dw::LANES
                    && dw::available()
                    && dw::plan(&win, DEPTHWISE_BAND_LIMIT).is_some()
                {
                    // Sixteen channels at a time, interleaved (`kernels::depthwise`); groups
                    // of tasks of some 32k multiply-adds, as the planes below.
                    let groups = cin.div_ceil(dw::LANES);
                    let min_groups = (1usize << 15).div_ceil(dw::LANES * plane * kh * kw);
                    // The channels' means of the finished output, when the plan asks for them
                    // (`Ctx::means`: the global average pool that reads it): each group's sums,
                    // summed by the kernel while its rows are in L1 — only when nothing is left
                    // for the executor to apply after the kernel (a residual to add).
                    let want = ctx.means.is_some() && ctx.epilogue.is_none();
                    let mut sums = vec![0.0f32; if want { n * groups * dw::LANES } else { 0 }];
                    let mut sum_slots: Vec<Option<&mut [f32]>> = if want {
                        sums.chunks_mut(dw::LANES).map(Some).collect()
                    } else {
                        (0..n * groups).map(|_| None).collect()
                    };
                    samples
                        .into_iter()
                        .flat_map(|s| s.chunks_mut(dw::LANES * plane))
                        .zip(sum_slots.drain(..))
                        .collect::<Vec<_>>()
                        .into_par_iter()
                        .with_min_len(min_groups)
                        .enumerate()
                        .for_each(|(i, (dst, sm))| {
                            let (b, c0) = (i / groups, i % groups * dw::LANES);
                            let nc = dw::LANES.min(cin - c0);
                            let src = &x.data[(b * cin + c0) * h * w..(b * cin + c0 + nc) * h * w];
                            let f = &wt[c0 * kh * kw..(c0 + nc) * kh * kw];
                            let bs = bias.map(|v| &v[c0..c0 + nc]);
                            crate::kernels::with_thread_scratch(|s| {
                                vectorised(
                                    #[inline(always)]
                                    || {
                                        let limit = DEPTHWISE_BAND_LIMIT;
                                        if dw::group(src, nc, f, bs, &win, epi, s, dst, limit, sm) {
                                            return;
                                        }
                                        // Not reached (checked above); the plane kernel.
                                        for (l, d) in dst.chunks_mut(plane).enumerate() {
                                            let src = &src[l * h * w..(l + 1) * h * w];
                                            let f = &f[l * kh * kw..(l + 1) * kh * kw];
                                            let b = bs.map_or(0.0, |b| b[l]);
                                            depthwise_plane(src, f, &win, s, d, b);
                                            if let Some(e) = epi {
                                                e.apply_here(d);
                                            }
                                        }
                                    },
                                )
                            })
                        });
                    if want {
                        // Divided as the global average pool divides its sums.
                        let means: Vec<f32> = (0..n * cin)
                            .map(|bc| {
                                let (b, c) = (bc / cin, bc % cin);
                                sums[(b * groups + c / dw::LANES) * dw::LANES + c % dw::LANES]
                                    / plane as f32
                            })
                            .collect();
                        ctx.means = Some(means);
                    }
                    return Ok(vec![out]);
                }
                // Planes grouped so that a task has some 32k multiply-adds (the deep layers'
                // 7×7 planes would otherwise be hundreds of tiny tasks).
                let min_planes = (1usize << 15).div_ceil(plane * kh * kw);
                // Each thread's kept scratch buffer holds the padded or phase planes (no
                // allocation and page faults per task: the receptive-field measurement runs
                // thousands of one-channel planes through here).
                samples
                    .into_iter()
                    .flat_map(|s| s.chunks_mut(plane))
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .with_min_len(min_planes)
                    .enumerate()
                    .for_each(|(bc, dst)| {
                        crate::kernels::with_thread_scratch(|padded| {
                            vectorised(
                                #[inline(always)]
                                || {
                                    let c = bc % cin;
                                    let src = &x.data[bc * h * w..(bc + 1) * h * w];
                                    let f = &wt[c * kh * kw..(c + 1) * kh * kw];
                                    let b = bias.map_or(0.0, |b| b[c]);
                                    depthwise_plane(src, f, &win, padded, dst, b);
                                    if let Some(f) = epi {
                                        f.apply_here(dst);
                                    }
                                },
                            )
                        })
                    });
                return Ok(vec![out]);
            } else {
                // The bias (which may come from a folded batch norm, without `bias: true`)
                // and a fused activation are applied tile by tile as the output is written.
                let bias = weights.get(1).map(|t| &t.data[..]);
                // The activation alone. The product kernels can add a residual tile by tile
                // (`kernels::Epilogue`), but in this layout a tile's residual is `m` short
                // rows a plane apart, read while the product runs: ResNet-50's fused
                // bottleneck outputs took 1.5–3× as long as the product plus the separate
                // add (docs/PERFORMANCE.md, "sixth pass"). With a residual, both are left to
                // the executor, which applies them in one sequential pass after the kernel.
                let epi = ctx.epilogue.take_act();
                if let (Some(p), true) = (weights.get(2), self.blocked_on(cin, cout, [oh, ow])) {
                    // Prepared by the inference plan: the blocked direct kernel on packed
                    // filter panels, one image at a time over every thread (`im2col` and
                    // `gemm` or the implicit product where it declines the shape).
                    // The im2col buffer it replaces is the declared workspace: a shape whose
                    // buffer is over the per-tensor limit is refused here as on the other path.
                    scratch(&[k, plane])?;
                    let threads = rayon::current_num_threads();
                    for (b, dst) in samples.into_iter().enumerate() {
                        let xb = &x.data[b * cin * h * w..(b + 1) * cin * h * w];
                        ctx.macs += match blocked::conv(
                            xb, cin, &win, &p.data, cout, bias, epi, dst, threads,
                        ) {
                            Some(macs) => macs,
                            None => conv_gemm(xb, cin, &win, wt, cout, bias, epi, dst, true),
                        };
                    }
                    return Ok(vec![out]);
                }
                // Enough images × groups to share out: one thread each, else threads within.
                let inner = n * g < rayon::current_num_threads();
                scratch(&[k, plane])?;
                ctx.macs += samples
                    .into_iter()
                    .flat_map(|s| s.chunks_mut(og * plane))
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .enumerate()
                    .map(|(bg, dst)| {
                        let (b, gi) = (bg / g, bg % g);
                        let xg =
                            &x.data[(b * cin + gi * cg) * h * w..(b * cin + (gi + 1) * cg) * h * w];
                        let wg = &wt[gi * og * k..(gi + 1) * og * k];
                        let bg = bias.map(|v| &v[gi * og..(gi + 1) * og]);
                        conv_gemm(xg, cg, &win, wg, og, bg, epi, dst, inner)
                    })
                    .sum::<u64>();
                return Ok(vec![out]);
            }
        }
        // Transposed: the bias after the scatter.
        if let Some(bias) = weights.get(1).map(|t| &t.data) {
            let plane = oh * ow;
            out.data
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(bc, dst)| {
                    let v = bias[bc % cout];
                    dst.iter_mut().for_each(|d| *d += v);
                });
        }
        Ok(vec![out])
    }
    fn prepare(
        &self,
        weights: &[Tensor],
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Option<Vec<Tensor>> {
        // Winograd F(2×2, 3×3) for 3×3, stride-1, undilated, ungrouped, zero-padded
        // convolutions with enough channels to amortise the transforms, on the maps where the
        // forward pass runs it (`Conv2d::winograd_on`): [weight, bias (zeros when none),
        // transformed filters].
        let dim = |s: Option<&Shape>, i: usize| s.and_then(|s| s.0.get(i)).map(|&d| d as usize);
        let (Some(cin), Some(cout), Some(oh), Some(ow)) = (
            dim(inputs.first(), 1),
            dim(outputs.first(), 1),
            dim(outputs.first(), 2),
            dim(outputs.first(), 3),
        ) else {
            return None;
        };
        if self.blocked_on(cin, cout, [oh, ow]) {
            // The blocked direct kernel's filter panels: [weight, bias (when any), panels].
            let k = cin * (self.kernel[0] * self.kernel[1]) as usize;
            let panels = blocked::pack(&weights[0].data, cout, k);
            let mut w = weights.to_vec();
            if w.len() < 2 {
                w.push(Tensor::zeros(&[cout]));
            }
            w.truncate(2);
            w.push(Tensor::new(vec![panels.len()], panels));
            return Some(w);
        }
        if !self.winograd_on(cin, cout, [oh, ow]) {
            return None;
        }
        let (m, c) = (self.out_ch as usize, self.in_ch as usize);
        let bias = weights
            .get(1)
            .cloned()
            .unwrap_or_else(|| Tensor::zeros(&[m]));
        let u = crate::kernels::winograd_filters(&weights[0].data, m, c);
        Some(vec![
            weights[0].clone(),
            bias,
            Tensor::new(vec![16, m, c], u),
        ])
    }
    fn fold_affine(&self, weights: &[Tensor], scale: &[f32], shift: &[f32]) -> Option<Vec<Tensor>> {
        super::conv_nd::fold_channel_affine(self.out_ch, self.transposed, weights, scale, shift)
    }
}

impl Counting for Conv2d {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        super::conv_nd::conv_convention(
            c,
            self.cost(inputs, outputs)?.macs,
            &outputs[0],
            self.bias,
            self.in_ch / self.groups,
            self.kernel[0] * self.kernel[1],
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

/// The input padded as PyTorch's `padding_mode` does before a convolution: `reflect` mirrors
/// about the edge pixel (`-1 → 1`), `replicate` repeats it, `circular` wraps around. The sizes
/// were checked when the layer was built (reflect: padding < size; circular: ≤ size).
fn pad_input(x: &Tensor, pad: Pad4, mode: PadMode) -> Result<Tensor, Diagnostic> {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let [pt, pb, pl, pr] = [pad.top, pad.bottom, pad.left, pad.right].map(|p| p as usize);
    // Replicate padding has no size limit in PyTorch: with a large stride the output stays
    // small while the padded input would not.
    let (ph, pw) = (h + pt + pb, w + pl + pr);
    buffer_size("padded input", &[n, c, ph, pw])?;
    let source = |p: usize, before: usize, len: usize| -> usize {
        let i = p as isize - before as isize;
        let last = len as isize - 1;
        (match mode {
            PadMode::Reflect if i < 0 => -i,
            PadMode::Reflect if i > last => 2 * last - i,
            PadMode::Replicate => i.clamp(0, last),
            PadMode::Circular => i.rem_euclid(len as isize),
            PadMode::Reflect | PadMode::Zeros => i,
        }) as usize
    };
    let rows: Vec<usize> = (0..ph).map(|y| source(y, pt, h)).collect();
    let cols: Vec<usize> = (0..pw).map(|x| source(x, pl, w)).collect();
    let mut out = Tensor::zeros(&[n, c, ph, pw]);
    out.data
        .par_chunks_mut(ph * pw)
        .enumerate()
        .for_each(|(bc, dst)| {
            let src = &x.data[bc * h * w..(bc + 1) * h * w];
            for (y, &sy) in rows.iter().enumerate() {
                let line = &src[sy * w..(sy + 1) * w];
                for (d, &sx) in dst[y * pw..(y + 1) * pw].iter_mut().zip(&cols) {
                    *d = line[sx];
                }
            }
        });
    Ok(out)
}

/// One plane of a depthwise convolution: `dst` (the output plane) from `src` (the input plane),
/// the plane's `kh × kw` filter `f` and its bias `bias` (added after the taps).
///
/// Stride 1: the input is copied once into a zero-padded plane `padded` whose rows are
/// `W_p = W_out + (kw − 1)·dx` wide; output (oy, ox) is then `Σ f[ky][kx] ·
/// padded[(oy + ky·dy)·W_p + ox + kx·dx]`, so for each tap one multiply-add runs over the whole
/// flattened plane at a constant shift (long vector loops even for 7×7 planes; the extra
/// `W_p − W_out` columns of each row are computed and dropped). The buffer is reused from plane
/// to plane without clearing: every element of it is written (the padding with zeros, the
/// accumulator by the first tap). Stride 1 without left padding: no copy
/// ([`depthwise_direct`]). Strides above 1 without dilation: the same over phase planes
/// ([`depthwise_phased`]). Others: tap by tap over whole output rows, the valid columns of each
/// tap as one range.
#[inline(always)]
fn depthwise_plane(
    src: &[f32],
    f: &[f32],
    win: &Window2d,
    padded: &mut Vec<f32>,
    dst: &mut [f32],
    bias: f32,
) {
    let ([kh, kw], [h, w], [oh, ow]) = (win.kernel, win.input, win.output);
    let ([dy, dx], [pt, pl]) = (win.dilation, win.pad);
    if oh == 0 || ow == 0 {
        return;
    }
    let (hp, wp) = (oh + (kh - 1) * dy, ow + (kw - 1) * dx);
    // The padded plane is at most a few times the planes themselves, unless the padding and
    // dilation are huge (then whole rows of it would be zeros): the row kernel below does it.
    let bounded = hp.saturating_mul(wp) <= 4 * (h * w).max(oh * ow) + 4096;
    if win.stride == [1, 1] && pl == 0 && depthwise_direct(src, f, win, dst, bias) {
        return;
    }
    if win.stride == [1, 1] && bounded {
        padded.resize(hp * wp + oh * wp, 0.0);
        let (pad_plane, acc) = padded.split_at_mut(hp * wp);
        for (r, row) in pad_plane.chunks_exact_mut(wp).enumerate() {
            let iy = r as isize - pt as isize;
            if iy < 0 || iy >= h as isize {
                row.fill(0.0);
                continue;
            }
            // row[c] = src[iy][c − pl] for the columns inside the image, zero elsewhere.
            let line = &src[iy as usize * w..(iy as usize + 1) * w];
            let lo = pl.min(wp);
            let hi = (pl + w).min(wp);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            if hi > lo {
                row[lo..hi].copy_from_slice(&line[..hi - lo]);
            }
        }
        // Flattened outputs 0..len, where (oy, ox) is at oy·W_p + ox.
        let len = (oh - 1) * wp + ow;
        taps_flat(
            &mut acc[..len],
            pad_plane,
            f,
            [kh, kw],
            |ky, kx| ky * dy * wp + kx * dx,
            0.0,
        );
        copy_rows(&acc[..len], wp, dst, ow, bias);
        return;
    }
    if let Some(ph) = depthwise_phases(
        [h, w],
        [oh, ow],
        [kh, kw],
        win.stride,
        [dy as u64, dx as u64],
    ) {
        depthwise_phased(src, f, win, &ph, padded, dst, bias);
        return;
    }
    depthwise_rows(src, f, win, 0..oh, dst, bias);
}

/// A stride-1 depthwise plane without the zero-padded copy: the interior (outputs whose every
/// tap is inside the input: rows `[pt, r1)`, columns `[pl, c1)`) by [`taps_flat`] straight
/// from the input plane into `dst`, as one flattened range when output and input rows have the
/// same length (the columns it computes across row ends are border columns, rewritten next),
/// else row by row; then the border rows by [`depthwise_rows`] and the border columns of the
/// interior rows one output at a time. Every output adds its taps inside the input in the
/// taps' order, then the bias, as the padded plane does (its padded taps add zeros): the same
/// values. `false` (nothing written) when there is no interior.
///
/// Taken only without left padding (valid convolutions: U-Net's, and the one-channel copies
/// `check` measures receptive fields with): the border columns' scalar loop made padded
/// layers slower than the copy it saves (efficientnet_b0's 5×5 on 28×28, docs/PERFORMANCE.md).
/// Without left padding the right border is the columns whose last tap leaves the input,
/// none when the right padding is also zero.
#[inline(always)]
fn depthwise_direct(src: &[f32], f: &[f32], win: &Window2d, dst: &mut [f32], bias: f32) -> bool {
    let ([kh, kw], [h, w], [oh, ow]) = (win.kernel, win.input, win.output);
    let ([dy, dx], [pt, pl]) = (win.dilation, win.pad);
    let (ey, ex) = ((kh - 1) * dy, (kw - 1) * dx);
    if h <= ey || w <= ex {
        return false;
    }
    let (r1, c1) = (oh.min(h - ey + pt), ow.min(w - ex + pl));
    if r1 <= pt || c1 <= pl {
        return false;
    }
    let shift = |ky: usize, kx: usize| ky * dy * w + kx * dx;
    if ow == w {
        let acc = &mut dst[pt * w + pl..(r1 - 1) * w + c1];
        taps_flat(acc, src, f, [kh, kw], shift, bias);
    } else {
        for oy in pt..r1 {
            let acc = &mut dst[oy * ow + pl..oy * ow + c1];
            taps_flat(acc, &src[(oy - pt) * w..], f, [kh, kw], shift, bias);
        }
    }
    depthwise_rows(src, f, win, 0..pt, dst, bias);
    depthwise_rows(src, f, win, r1..oh, dst, bias);
    // Output (oy, ox) reads input (oy + ky·dy − pt, ox + kx·dx − pl) where inside.
    let point = |oy: usize, ox: usize| {
        let mut v = 0.0f32;
        for ky in 0..kh {
            let Some(iy) = (oy + ky * dy).checked_sub(pt).filter(|&iy| iy < h) else {
                continue;
            };
            for kx in 0..kw {
                if let Some(ix) = (ox + kx * dx).checked_sub(pl).filter(|&ix| ix < w) {
                    v += f[ky * kw + kx] * src[iy * w + ix];
                }
            }
        }
        v + bias
    };
    for oy in pt..r1 {
        for ox in (0..pl).chain(c1..ow) {
            dst[oy * ow + ox] = point(oy, ox);
        }
    }
    true
}

/// Output rows `rows` of a depthwise plane (see [`depthwise_plane`]), tap by tap over whole
/// output rows, the valid columns of each tap as one range: per output, the taps inside the
/// input added in the taps' order to zero, then the bias.
#[inline(always)]
fn depthwise_rows(
    src: &[f32],
    f: &[f32],
    win: &Window2d,
    rows: std::ops::Range<usize>,
    dst: &mut [f32],
    bias: f32,
) {
    let ([kh, kw], [_, w], [_, ow]) = (win.kernel, win.input, win.output);
    let dx = win.dilation[1];
    let (sx, px) = (win.stride[1], win.pad[1] as isize);
    for oy in rows {
        let row = &mut dst[oy * ow..(oy + 1) * ow];
        row.fill(0.0);
        for ky in 0..kh {
            let Some(iy) = win.tap(0, oy, ky) else {
                continue;
            };
            let line = &src[iy * w..(iy + 1) * w];
            for kx in 0..kw {
                let off = (kx * dx) as isize - px;
                // ox valid when 0 ≤ ox·sx + off < w.
                let lo = if off >= 0 {
                    0
                } else {
                    ((-off) as usize).div_ceil(sx)
                };
                let hi = if (w as isize) - off <= 0 {
                    0
                } else {
                    ((w as isize - off) as usize).div_ceil(sx).min(ow)
                };
                if hi <= lo {
                    continue; // this tap reads only padding
                }
                let wv = f[ky * kw + kx];
                let start = (lo as isize * sx as isize + off) as usize;
                let (row, line) = (&mut row[lo..hi], &line[start..]);
                match sx {
                    2 => axpy_strided::<2>(row, line, wv),
                    _ => row
                        .iter_mut()
                        .zip(line.iter().step_by(sx))
                        .for_each(|(o, &v)| *o += wv * v),
                }
            }
        }
        row.iter_mut().for_each(|d| *d += bias);
    }
}

/// `acc[i] = Σ_taps f[ky][kx] · plane[i + shift(ky, kx)] + bias`, in the taps' order (the first
/// tap writes, the others add, the bias last). Blocks of [`TAP_BLOCK`] outputs go through every tap while they
/// sit in registers, so the accumulator is loaded and stored once per block rather than once
/// per tap (the per-tap sweep over the whole plane was bound by those loads and stores).
#[inline(always)]
fn taps_flat(
    acc: &mut [f32],
    plane: &[f32],
    f: &[f32],
    [kh, kw]: [usize; 2],
    shift: impl Fn(usize, usize) -> usize,
    bias: f32,
) {
    let (len, taps) = (acc.len(), kh * kw);
    // The taps' weights and offsets, computed once (not per block).
    let mut tw = [0.0f32; MAX_BLOCKED_TAPS];
    let mut to = [0usize; MAX_BLOCKED_TAPS];
    let blocked = taps <= MAX_BLOCKED_TAPS && len >= TAP_BLOCK;
    if blocked {
        for ky in 0..kh {
            for kx in 0..kw {
                let t = ky * kw + kx;
                (tw[t], to[t]) = (f[t], shift(ky, kx));
            }
        }
    }
    let body = if blocked {
        len / TAP_BLOCK * TAP_BLOCK
    } else {
        0
    };
    for (b, out) in acc[..body].chunks_exact_mut(TAP_BLOCK).enumerate() {
        let i = b * TAP_BLOCK;
        let mut a = [0.0f32; TAP_BLOCK];
        let src: &[f32; TAP_BLOCK] = plane[to[0] + i..to[0] + i + TAP_BLOCK]
            .try_into()
            .expect("a block of TAP_BLOCK");
        for (o, &v) in a.iter_mut().zip(src) {
            *o = tw[0] * v;
        }
        for t in 1..taps {
            let (wv, s) = (tw[t], to[t] + i);
            let src: &[f32; TAP_BLOCK] = plane[s..s + TAP_BLOCK]
                .try_into()
                .expect("a block of TAP_BLOCK");
            for (o, &v) in a.iter_mut().zip(src) {
                *o += wv * v;
            }
        }
        for (o, &v) in out.iter_mut().zip(&a) {
            *o = v + bias;
        }
    }
    // The rest (and kernels of more taps): tap by tap over the remaining outputs.
    let tail = &mut acc[body..];
    for ky in 0..kh {
        for kx in 0..kw {
            let (wv, s) = (f[ky * kw + kx], shift(ky, kx) + body);
            let src = &plane[s..s + tail.len()];
            if ky == 0 && kx == 0 {
                tail.iter_mut().zip(src).for_each(|(o, &v)| *o = wv * v);
            } else {
                tail.iter_mut().zip(src).for_each(|(o, &v)| *o += wv * v);
            }
        }
    }
    tail.iter_mut().for_each(|o| *o += bias);
}

/// Kernels of at most this many taps (7×7) are computed by blocks in [`taps_flat`].
const MAX_BLOCKED_TAPS: usize = 49;

/// The most floats of `kernels::depthwise`'s working buffer for one band of one output row
/// (4 MiB a thread): past it (huge dilations or padding) the plane kernel runs.
const DEPTHWISE_BAND_LIMIT: usize = 1 << 20;

/// Outputs [`taps_flat`] carries through all taps at once: 4 AVX-512 registers.
const TAP_BLOCK: usize = 64;

/// The output rows from the flattened accumulator (rows `stride` apart, `ow` of each kept),
/// plus the bias.
#[inline(always)]
fn copy_rows(acc: &[f32], stride: usize, dst: &mut [f32], ow: usize, bias: f32) {
    for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
        let a = &acc[oy * stride..oy * stride + ow];
        out.iter_mut().zip(a).for_each(|(d, &v)| *d = v + bias);
    }
}

/// The phase planes of a strided, undilated depthwise convolution (see [`depthwise_phased`]):
/// `sy × sx` planes of `hq × wq`, `hq = H_out + (kh − 1) / sy`, `wq = W_out + (kw − 1) / sx`.
#[derive(Debug, Clone, Copy)]
struct Phases {
    stride: [usize; 2],
    hq: usize,
    wq: usize,
}

impl Phases {
    /// Floats of the working buffer: the phase planes and an accumulator of `H_out` rows of `wq`.
    fn floats(&self) -> usize {
        let [sy, sx] = self.stride;
        (sy * sx + 1) * self.hq * self.wq
    }
}

/// The phase planes for a depthwise convolution with stride above 1 in some axis and no
/// dilation, when they stay within a few times the planes (else `None`: the row kernel runs).
fn depthwise_phases(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    dilation: [u64; 2],
) -> Option<Phases> {
    let [sy, sx] = stride;
    if dilation != [1, 1] || stride == [1, 1] || sy == 0 || sx == 0 || oh == 0 || ow == 0 {
        return None;
    }
    let (hq, wq) = (oh + (kh - 1) / sy, ow + (kw - 1) / sx);
    let floats = (sy * sx + 1).checked_mul(hq)?.checked_mul(wq)?;
    (floats <= 8 * (h * w).max(oh * ow) + 4096).then_some(Phases { stride, hq, wq })
}

/// A strided depthwise plane as long vector loops: the zero-padded input is split into
/// `sy × sx` phase planes, `P[py][px][r][c] = padded[sy·r + py][sx·c + px]`, so that output
/// (oy, ox)'s tap (ky, kx) is `P[ky mod sy][kx mod sx][oy + ky / sy][ox + kx / sx]`: for each
/// tap one multiply-add runs over the whole flattened phase plane at a constant shift, as at
/// stride 1 (the `wq − W_out` extra columns of each row are computed and dropped).
#[inline(always)]
fn depthwise_phased(
    src: &[f32],
    f: &[f32],
    win: &Window2d,
    ph: &Phases,
    buf: &mut Vec<f32>,
    dst: &mut [f32],
    bias: f32,
) {
    let ([kh, kw], [h, w], [oh, ow]) = (win.kernel, win.input, win.output);
    let [pt, pl] = win.pad;
    let ([sy, sx], hq, wq) = (ph.stride, ph.hq, ph.wq);
    let size = hq * wq;
    // Reused without clearing: every element of the phase planes is written below.
    buf.resize(ph.floats(), 0.0);
    let (planes, acc) = buf.split_at_mut(sy * sx * size);
    for py in 0..sy {
        for r in 0..hq {
            let iy = (sy * r + py) as isize - pt as isize;
            let line =
                (iy >= 0 && iy < h as isize).then(|| &src[iy as usize * w..(iy as usize + 1) * w]);
            for px in 0..sx {
                let row = &mut planes[(py * sx + px) * size + r * wq..][..wq];
                let Some(line) = line else {
                    row.fill(0.0);
                    continue;
                };
                // Column c reads input column sx·c + px − pl when inside the image: the
                // columns [lo, hi), zeros on either side.
                let (lo, hi) = crate::kernels::valid_range(px as isize - pl as isize, sx, w, wq);
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if hi > lo {
                    let start = sx * lo + px - pl;
                    let (row, line) = (&mut row[lo..hi], &line[start..]);
                    match sx {
                        2 => copy_strided::<2>(row, line),
                        _ => row
                            .iter_mut()
                            .zip(line.iter().step_by(sx))
                            .for_each(|(d, &v)| *d = v),
                    }
                }
            }
        }
    }
    let len = (oh - 1) * wq + ow;
    let acc = &mut acc[..len];
    taps_flat(
        acc,
        planes,
        f,
        [kh, kw],
        |ky, kx| ((ky % sy) * sx + kx % sx) * size + (ky / sy) * wq + kx / sx,
        0.0,
    );
    copy_rows(acc, wq, dst, ow, bias);
}

/// `row[j] = line[j·S]`, written so that the compiler vectorises the (interleaved) loads.
#[inline(always)]
fn copy_strided<const S: usize>(row: &mut [f32], line: &[f32]) {
    let Some((last, body)) = row.split_last_mut() else {
        return;
    };
    for (o, group) in body.iter_mut().zip(line.chunks_exact(S)) {
        *o = group[0];
    }
    *last = line[body.len() * S];
}

/// `row[j] += w · line[j·S]`, written so that the compiler vectorises the (interleaved) loads.
#[inline(always)]
fn axpy_strided<const S: usize>(row: &mut [f32], line: &[f32], w: f32) {
    let Some((last, body)) = row.split_last_mut() else {
        return;
    };
    for (o, group) in body.iter_mut().zip(line.chunks_exact(S)) {
        *o += w * group[0];
    }
    *last += w * line[body.len() * S];
}

/// Elements of the im2col / col2im buffer of one image and group (kernel taps × positions),
/// which can exceed the output by the kernel's area: checked against the executor's limit
/// before it is allocated.
fn scratch(factors: &[usize]) -> Result<usize, Diagnostic> {
    buffer_size("im2col buffer", factors)
}

/// Elements of a buffer the convolution allocates (`what`), checked against the executor's
/// limit first.
fn buffer_size(what: &str, factors: &[usize]) -> Result<usize, Diagnostic> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build;

    #[test]
    fn resnet_stem_by_hand() {
        // 7×7, 3→64, stride 2, padding 3, no bias, 224² → 112²: 3·64·49 = 9408 parameters,
        // 64·112·112 outputs × 3·49 = 118,013,952 MACs.
        let (l, out) = build(
            "conv2d",
            "{out: 64, kernel: 7, stride: 2, padding: 3, bias: false}",
            &[&[1, 3, 224, 224]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![1, 64, 112, 112]);
        assert_eq!(l.params().total(), 9408);
        let c = l.cost(&[Shape(vec![1, 3, 224, 224])], &out).unwrap();
        assert_eq!(c.macs, 118_013_952);
        assert_eq!(c.flops, 2 * 118_013_952);
        assert_eq!(l.label(), "conv 7×7/2 p3, 64");
    }

    #[test]
    fn options() {
        // depthwise 3×3 on 32 channels with bias: 32·9 + 32.
        let (l, out) = build(
            "conv2d",
            "{out: 32, kernel: 3, padding: 1, groups: 32}",
            &[&[2, 32, 10, 10]],
        )
        .unwrap();
        assert_eq!(l.params().total(), 32 * 9 + 32);
        assert_eq!(out[0].0, vec![2, 32, 10, 10]);
        // "same" with an even kernel pads 0 before and 1 after (PyTorch), dilation 2 doubles it.
        let (_, out) = build(
            "conv2d",
            "{out: 4, kernel: 4, padding: same, dilation: 2}",
            &[&[1, 1, 9, 7]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![1, 4, 9, 7]);
        // Asymmetric padding [top, left, bottom, right].
        let (_, out) = build(
            "conv2d",
            "{out: 1, kernel: 3, stride: 2, padding: [0, 0, 1, 1]}",
            &[&[1, 1, 8, 8]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![1, 1, 4, 4]);
        // Rectangular kernel and stride.
        let (_, out) = build(
            "conv2d",
            "{out: 1, kernel: [1, 7], padding: [0, 3], stride: [2, 1]}",
            &[&[1, 1, 17, 17]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![1, 1, 9, 17]);
    }

    #[test]
    fn errors() {
        let e = build(
            "conv2d",
            "{out: 64, kernel: 3, groups: 3}",
            &[&[1, 32, 8, 8]],
        )
        .unwrap_err();
        assert!(e.message.contains("groups = 3 must divide"), "{e}");
        let e = build("conv2d", "{out: 64, kernel: 7}", &[&[1, 3, 4, 4]]).unwrap_err();
        assert!(e.message.contains("spans 7 pixels"), "{e}");
        let e = build(
            "conv2d",
            "{out: 64, kernel: 3, stride: 2, padding: same}",
            &[&[1, 3, 8, 8]],
        )
        .unwrap_err();
        assert!(e.message.contains("stride 1"), "{e}");
        let e = build("conv2d", "{kernel: 3}", &[&[1, 3, 8, 8]]).unwrap_err();
        assert!(e.message.contains("needs `out`"), "{e}");
        let e = build("conv2d", "{out: 4, kernel: 3}", &[&[1, 3]]).unwrap_err();
        assert!(e.message.contains("N×C×H×W"), "{e}");
    }

    #[test]
    fn conventions_by_hand() {
        // ConvTranspose2d(8, 4, 3, stride 2) with bias on 2×8×10×10 → 2×4×21×21. Figures
        // measured with each tool: fvcore 57600, ptflops (batch 1) 30564, thop 254016,
        // torchinfo 257544.
        let x = Shape(vec![2, 8, 10, 10]);
        let (l, y) = build("deconv", "{out: 4, kernel: 3, stride: 2}", &[&x.0]).unwrap();
        let cost = |c| l.convention_cost(c, std::slice::from_ref(&x), &y).unwrap();
        assert_eq!(cost(Convention::Fvcore), 2 * 100 * 8 * 4 * 9);
        assert_eq!(cost(Convention::Ptflops), 2 * 30564);
        assert_eq!(cost(Convention::Thop), 254016);
        assert_eq!(cost(Convention::Torchinfo), 257544);
        // Conv2d(8, 4, 3, groups 2) on 2×8×10×10: 2·4·64·4·9 = 18432 MACs; ptflops adds the
        // bias (batch 1: 9216 + 256 = 9472), torchinfo too (18432 + 4·64·2 = 18944).
        let (l, y) = build("conv", "{out: 4, kernel: 3, groups: 2}", &[&x.0]).unwrap();
        let cost = |c| l.convention_cost(c, std::slice::from_ref(&x), &y).unwrap();
        assert_eq!(cost(Convention::Torchvision), 18432);
        assert_eq!(cost(Convention::Ptflops), 2 * 9472);
        assert_eq!(cost(Convention::Thop), 18432);
        assert_eq!(cost(Convention::Torchinfo), 18944);
    }

    #[test]
    fn training_by_hand() {
        // 3→64 7×7/2 stem without bias on 1×3×224×224: forward 2·M FLOPs; with the input not
        // needing a gradient, backward is the weight gradient alone (2·M).
        let m = 118_013_952u64;
        let x = Shape(vec![1, 3, 224, 224]);
        let (l, y) = build(
            "conv",
            "{out: 64, kernel: 7, stride: 2, padding: 3, bias: false}",
            &[&x.0],
        )
        .unwrap();
        let t = l.training(std::slice::from_ref(&x), &y, false, 4).unwrap();
        assert_eq!((t.forward_flops, t.backward_flops), (2 * m, 2 * m));
        assert_eq!(t.saved.inputs, vec![0]);
        let t = l.training(std::slice::from_ref(&x), &y, true, 4).unwrap();
        assert_eq!(t.backward_flops, 4 * m);
    }

    #[test]
    fn collapsed_copy_has_one_channel() {
        // A depthwise 3×3/2 convolution with dilation 2, asymmetric padding and a bias, on
        // 32 channels, collapses to a 1→1 convolution with the same window: a 1×1×3×3 weight,
        // no bias, and the same output size on one channel (9 + 0 + 1 − 5 = 5, /2 → 3 rows).
        let (l, out) = build(
            "conv2d",
            "{out: 32, kernel: 3, stride: 2, dilation: 2, groups: 32, padding: [0, 1, 1, 0]}",
            &[&[2, 32, 9, 9]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![2, 32, 3, 3]);
        let Collapsed::Layer(c) = l.collapsed() else {
            panic!("a convolution collapses to a convolution");
        };
        let w = c.weights();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].shape, vec![1, 1, 3, 3]);
        assert_eq!(
            c.output_shapes(&[Shape(vec![5, 1, 9, 9])]).unwrap()[0].0,
            vec![5, 1, 3, 3]
        );
        // Transposed, 4→8 channels in 2 groups: a 1→1 transposed convolution.
        let (l, out) = build(
            "deconv",
            "{out: 8, kernel: 3, stride: 2, padding: 1, output_padding: 1, groups: 2}",
            &[&[1, 4, 7, 7]],
        )
        .unwrap();
        let Collapsed::Layer(c) = l.collapsed() else {
            panic!("a transposed convolution collapses to one");
        };
        assert_eq!(c.weights()[0].shape, vec![1, 1, 3, 3]);
        assert_eq!(
            c.output_shapes(&[Shape(vec![3, 1, 7, 7])]).unwrap()[0].0,
            vec![3, 1, out[0].0[2], out[0].0[3]]
        );
    }

    #[test]
    fn transposed() {
        // ConvTranspose2d(64, 32, 2, stride 2): 64·32·4 + 32 params; 7² → 14²;
        // MACs (FlopCounterMode) = N·H_in·W_in·C_in·(C_out/g)·kh·kw = 49·64·32·4.
        let (l, out) = build(
            "deconv",
            "{out: 32, kernel: 2, stride: 2}",
            &[&[1, 64, 7, 7]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![1, 32, 14, 14]);
        assert_eq!(l.params().total(), 64 * 32 * 4 + 32);
        assert_eq!(
            l.cost(&[Shape(vec![1, 64, 7, 7])], &out).unwrap().macs,
            49 * 64 * 32 * 4
        );
        let (_, out) = build(
            "deconv",
            "{out: 8, kernel: 3, stride: 2, padding: 1, output_padding: 1}",
            &[&[1, 4, 7, 7]],
        )
        .unwrap();
        assert_eq!(out[0].0, vec![1, 8, 14, 14]);
        let e = build(
            "deconv",
            "{out: 8, kernel: 3, stride: 2, output_padding: 2}",
            &[&[1, 4, 7, 7]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "output_padding 2 must be smaller than the stride or the dilation (2 / 1)"
        );
    }
}
