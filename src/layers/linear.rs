//! Fully-connected layer (torch.nn.Linear): applies to the last dimension.

use super::Collapsed;
use super::Convention;
use super::{
    add, mul, per_element, Arity, AttrDefault, Attrs, Category, Cost, Counting, Geometry, Kernel,
    Layer, Layout, Op, OpType, Params, Role, Shape, Tied, Training, WeightInfo, WeightedKind,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::kernels::{matmul, matvec};

use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};

pub const LINEAR: OpType = OpType {
    name: "linear",
    aliases: &["fc", "dense"],
    keys: &["out", "bias", "trainable", "tied", "transposed"],
    arity: Arity::Exactly(1),
    fused_bn: Some("batchnorm1d"),
    defaults: &[
        ("bias", AttrDefault::Bool(true)),
        ("trainable", AttrDefault::Bool(true)),
        ("transposed", AttrDefault::Bool(false)),
    ],
    build,
    summary: "fully-connected layer on the last dimension (torch.nn.Linear)",
};

#[derive(Debug)]
struct Linear {
    in_features: u64,
    out_features: u64,
    bias: bool,
    trainable: bool,
    params: u64,
    /// The layer whose `weight` it shares (`tied:`), by full path.
    tied: Option<String>,
    /// Whether it runs at every position of a tensor with positional axes (tokens, a
    /// channels-last map): then it mixes no positions (pointwise geometry).
    per_position: bool,
    /// The weight is stored in×out (`transposed: true`), as Hugging Face transformers' `Conv1D`
    /// stores it (GPT-2): y = x·W + b instead of nn.Linear's x·Wᵀ + b.
    transposed: bool,
}

fn build(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    if x.rank() < 2 {
        return Err(Diagnostic::new(format!(
            "linear needs an N×F input, got {x}"
        )));
    }
    let layout = a.input_layout(0);
    spatial_last_error(&x, &layout)?;
    // Positions elsewhere and features last: per position. A last axis of tokens is mixed
    // (token mixing): global.
    let per_position = layout.0.last().is_some_and(|r| !r.is_positional())
        && layout.0.iter().any(|r| r.is_positional());
    let in_features = x.0[x.rank() - 1];
    let out_features = a.req_positive("out", "1000")?;
    let bias = a.bool("bias", true)?;
    let trainable = a.bool("trainable", true)?;
    let tied = match a.raw("tied")? {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| {
                    Diagnostic::new(format!("`tied` names a layer, found {v}"))
                        .at(&v.path)
                        .help("e.g. `tied: wte` (the embedding whose table this layer reuses)")
                })?
                .to_string(),
        ),
    };
    let transposed = a.bool("transposed", false)?;
    if transposed && tied.is_some() {
        return Err(a
            .error("transposed", "a tied linear uses the other layer's weight as stored: `transposed` does not apply")
            .help("remove `transposed: true` (or `tied:`)"));
    }
    // A tied weight is the other layer's: only the bias is this layer's own.
    let params = add(&[
        if tied.is_some() {
            0
        } else {
            mul(&[in_features, out_features])?
        },
        if bias { out_features } else { 0 },
    ])?;
    Ok(Box::new(Linear {
        in_features,
        out_features,
        bias,
        trainable,
        params,
        tied,
        per_position,
        transposed,
    }))
}

/// A linear layer mixes its input's last dimension: an error when that is a spatial axis (an
/// `N×C×H×W` map's width, an `N×C×L` signal's length), which would mix positions instead of
/// channels. The fix: flatten (a CNN head) or move the channels last (ConvNeXt's
/// channels-last MLP).
fn spatial_last_error(x: &Shape, layout: &Layout) -> Result<(), Diagnostic> {
    let Some(Role::Space(k)) = layout.0.last() else {
        return Ok(());
    };
    let spatial = layout.spatial_hint();
    let axis = Role::Space(*k).describe(spatial);
    let n = x.0[x.rank() - 1];
    let channels = match layout.0.iter().position(|r| *r == Role::Channel) {
        Some(c) => format!(" instead of the {} channels", x.0[c]),
        None => String::new(),
    };
    let mut d = Diagnostic::new(format!(
        "linear applies to the last dimension, and the last dimension of this {} input ({}) is {axis}: it would mix the {n} position{} along it{channels}",
        x.per_sample(),
        layout.letters(spatial),
        if n == 1 { "" } else { "s" },
    ));
    let flatten = "for a CNN head, flatten first: `{op: flatten}` (after a global pooling)";
    d = match layout.0.iter().position(|r| *r == Role::Channel) {
        Some(c) => {
            // The permutation that moves the channels last, everything else in order.
            let dims: Vec<String> = (0..layout.rank())
                .filter(|&i| i != c)
                .chain([c])
                .map(|i| i.to_string())
                .collect();
            d.help(format!(
                "{flatten}; to apply it to the channels at every position (channels-last, as ConvNeXt does), permute first: `{{op: permute, dims: [{}]}}`",
                dims.join(", ")
            ))
        }
        None => d.help(flatten),
    };
    Err(d)
}

impl Op for Linear {
    fn op(&self) -> &'static str {
        "linear"
    }
    fn label(&self) -> String {
        match &self.tied {
            Some(t) => format!(
                "linear {}→{} (tied to {t})",
                self.in_features, self.out_features
            ),
            None if self.transposed => format!(
                "linear {}→{} (Conv1D, weight in×out)",
                self.in_features, self.out_features
            ),
            None => format!("linear {}→{}", self.in_features, self.out_features),
        }
    }
    fn category(&self) -> Category {
        Category::Convolution
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut s = inputs[0].0.clone();
        let last = s.len() - 1;
        s[last] = self.out_features;
        Ok(vec![Shape(s)])
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
    fn cost(&self, _inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let macs = mul(&[outputs[0].numel()?, self.in_features])?;
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
        if self.per_position {
            Geometry::Pointwise
        } else {
            Geometry::Global
        }
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // The last dimension becomes features; the others keep their meaning.
        let mut l = inputs[0].clone();
        if let Some(last) = l.0.last_mut() {
            *last = Role::Channel;
        }
        Ok(vec![l])
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(if self.transposed { "Conv1D" } else { "Linear" })
    }
    fn weight_info(&self) -> Option<WeightInfo> {
        Some(WeightInfo {
            kind: WeightedKind::Linear,
            in_ch: self.in_features,
            out_ch: self.out_features,
            kernel: [1, 1].into(),
            stride: [1, 1].into(),
            pad_begin: [0, 0].into(),
            pad_end: [0, 0].into(),
            dilation: [1, 1].into(),
            groups: 1,
            bias: self.bias,
            trainable: self.trainable,
        })
    }
}

impl Kernel for Linear {
    /// `Gemm` (transB) on an N×F input; on more dimensions `MatMul` by the transposed weight
    /// (a `Transpose` of the initializer), then `Add` of the bias.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::int;
        let n = e.weights.len();
        let (w, bias) = if self.tied.is_some() {
            (e.weight(n - 1), self.bias.then(|| e.weight(0)))
        } else {
            (e.weight(0), self.bias.then(|| e.weight(1)))
        };
        let (x, out) = (e.input(0), e.output(0));
        if e.in_shapes[0].rank() == 2 && !self.transposed {
            let mut ins = vec![x.as_str(), w.as_str()];
            if let Some(b) = &bias {
                ins.push(b);
            }
            e.node("Gemm", &ins, &[&out], vec![int("transB", 1)]);
            return Ok(());
        }
        let wt = if self.transposed {
            w
        } else {
            e.step("Transpose", &[&w], vec![super::onnx::ints("perm", &[1, 0])])
        };
        match &bias {
            None => {
                e.node("MatMul", &[&x, &wt], &[&out], vec![]);
            }
            Some(b) => {
                let y = e.step("MatMul", &[&x, &wt], vec![]);
                e.node("Add", &[&y, b], &[&out], vec![]);
            }
        }
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // At every position (tokens, a channels-last map) it mixes features only; otherwise
        // every output unit sees every input unit.
        if self.per_position {
            Collapsed::Identity
        } else {
            Collapsed::Mix
        }
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let (i, o) = (self.in_features as usize, self.out_features as usize);
        let kind = if self.trainable {
            WeightKind::Trainable
        } else {
            WeightKind::Frozen
        };
        let mut w = Vec::new();
        if self.tied.is_none() {
            w.push(WeightSpec {
                name: "weight",
                shape: if self.transposed {
                    vec![i, o]
                } else {
                    vec![o, i]
                },
                kind,
                init: Init::Kaiming { fan_in: i },
            });
        }
        if self.bias {
            w.push(WeightSpec {
                name: "bias",
                shape: vec![o],
                kind,
                init: Init::Zeros,
            });
        }
        w
    }
    fn tied(&self) -> Option<Tied> {
        self.tied.as_ref().map(|layer| Tied {
            layer: layer.clone(),
            weight: "weight",
            shape: vec![self.out_features as usize, self.in_features as usize],
        })
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let (i, o) = (self.in_features as usize, self.out_features as usize);
        let rows = x.numel() / i;
        // Own weights first ([weight], [bias]); a tied weight comes after them.
        let (w, bias) = if self.tied.is_some() {
            (&weights[weights.len() - 1], self.bias.then(|| &weights[0]))
        } else {
            (&weights[0], weights.get(1))
        };
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rank ≥ 2") = o;
        let mut out = ctx.output(&shape);
        if self.transposed {
            // y (rows × out) = x (rows × in) · W, W stored in × out (transformers' Conv1D).
            ctx.macs += matmul(
                rows,
                o,
                i,
                &x.data,
                i,
                1,
                &w.data,
                o,
                1,
                &mut out.data,
                false,
            );
        } else if rows == 1 {
            // One row (batch 1): a matrix-vector product, bound by reading W once; each
            // thread streams its own block of W's rows.
            ctx.macs += matvec(&w.data, &x.data[..i], &mut out.data);
        } else {
            // y (rows × out) = x (rows × in) · Wᵀ, W stored out × in.
            ctx.macs += matmul(
                rows,
                o,
                i,
                &x.data,
                i,
                1,
                &w.data,
                1,
                i,
                &mut out.data,
                false,
            );
        }
        if let Some(bias) = bias {
            for row in out.data.chunks_mut(o) {
                row.iter_mut().zip(&bias.data).for_each(|(y, b)| *y += b);
            }
        }
        Ok(vec![out])
    }
}

impl Counting for Linear {
    fn forward_cublas(&self) -> bool {
        true
    }
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let y = &outputs[0];
        let macs = self.cost(inputs, outputs)?.macs;
        if self.transposed {
            // transformers' Conv1D is torch.addmm(bias, x.view(-1, in), W) (measured on
            // Conv1D(7, 100) over 1×8×100 and 2×8×100: 5600/11200, 5600/11200, 5607, 0, 4949/9898).
            return match c {
                // FlopCounterMode and fvcore (aten::addmm): in · numel(output).
                Convention::Torchvision | Convention::Fvcore => Ok(macs),
                // ptflops patches torch.addmm: the product plus the bias's elements, once.
                Convention::Ptflops => add(&[macs, if self.bias { self.out_features } else { 0 }]),
                // thop knows no Conv1D module: nothing.
                Convention::Thop => Ok(0),
                // torchinfo takes a module whose name says "conv" for a convolution: its
                // parameters × the output's sizes after the second × the batch.
                Convention::Torchinfo => {
                    let mut f = vec![self.params, y.0[0]];
                    f.extend_from_slice(&y.0[2..]);
                    mul(&f)
                }
            };
        }
        match c {
            // fvcore (aten::linear) and thop: in_features · numel(output).
            Convention::Torchvision | Convention::Fvcore | Convention::Thop => Ok(macs),
            // ptflops: (in·out + out for a bias) · the product of the leading dimensions.
            Convention::Ptflops => add(&[macs, if self.bias { y.numel()? } else { 0 }]),
            // torchinfo: parameters × output_size[0] (the batch only, whatever the rank); a
            // tied weight is still a parameter of this module (measured).
            Convention::Torchinfo => mul(&[
                add(&[
                    mul(&[self.in_features, self.out_features])?,
                    if self.bias { self.out_features } else { 0 },
                ])?,
                y.0[0],
            ]),
        }
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // addmm / matmul: cuBLAS on a GPU.
        Ok(Training {
            cublas: true,
            ..super::weighted_training(
                self.cost(inputs, outputs)?,
                outputs,
                input_grad,
                self.trainable,
                self.bias,
            )?
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::{build, build_laid};
    use crate::layers::{Layout, Role, Shape};

    /// A sequence of vectors, `N×L×F`.
    fn seq() -> Vec<Layout> {
        vec![Layout(vec![Role::Batch, Role::Sequence, Role::Channel])]
    }

    #[test]
    fn alexnet_fc6_by_hand() {
        // 9216 → 4096 with bias: 9216·4096 + 4096 = 37,752,832 params; 37,748,736 MACs.
        let (l, out) = build("linear", "{out: 4096}", &[&[1, 9216]]).unwrap();
        assert_eq!(l.params().total(), 37_752_832);
        let c = l.cost(&[Shape(vec![1, 9216])], &out).unwrap();
        assert_eq!(c.macs, 37_748_736);
        assert_eq!(c.flops, 2 * 37_748_736 + 4096);
        // Batch and sequence dimensions multiply the MACs, not the parameters.
        let (l, out) =
            build_laid("linear", "{out: 8, bias: false}", &[&[4, 5, 16]], &seq()).unwrap();
        assert_eq!(out[0].0, vec![4, 5, 8]);
        assert_eq!(
            l.cost(&[Shape(vec![4, 5, 16])], &out).unwrap().macs,
            4 * 5 * 8 * 16
        );
    }

    #[test]
    fn conventions_on_a_sequence() {
        // Linear(100, 7) on 2×8×100 (measured: fvcore 11200, ptflops at batch 1 5656, thop
        // 11200, torchinfo 1414 = 2 · 707 parameters).
        use super::Convention;
        let x = Shape(vec![2, 8, 100]);
        let (l, y) = build_laid("linear", "{out: 7}", &[&x.0], &seq()).unwrap();
        let cost = |c| l.convention_cost(c, std::slice::from_ref(&x), &y).unwrap();
        assert_eq!(cost(Convention::Fvcore), 11200);
        assert_eq!(cost(Convention::Thop), 11200);
        assert_eq!(cost(Convention::Ptflops), 2 * 5656);
        assert_eq!(cost(Convention::Torchinfo), 1414);
    }

    #[test]
    fn transposed_is_conv1d() {
        // transformers' Conv1D(7, 100): weight 100×7 (in × out), the same parameters and MACs
        // as Linear(100, 7); what the profilers charge on 1×8×100 and 2×8×100 (measured:
        // FlopCounterMode and fvcore 5600 / 11200, ptflops 5607 at batch 1, thop 0, torchinfo
        // 4949 / 9898).
        use super::Convention;
        let (l, y) = build_laid(
            "linear",
            "{out: 7, transposed: true}",
            &[&[1, 8, 100]],
            &seq(),
        )
        .unwrap();
        assert_eq!(l.weights()[0].shape, vec![100, 7]);
        assert_eq!(l.torch_type(), Some("Conv1D"));
        assert_eq!(l.params().total(), 707);
        let x = [Shape(vec![1, 8, 100])];
        assert_eq!(l.cost(&x, &y).unwrap().macs, 5600);
        let cost = |c| l.convention_cost(c, &x, &y).unwrap();
        assert_eq!(cost(Convention::Torchvision), 5600);
        assert_eq!(cost(Convention::Fvcore), 5600);
        assert_eq!(cost(Convention::Ptflops), 5607);
        assert_eq!(cost(Convention::Thop), 0);
        assert_eq!(cost(Convention::Torchinfo), 4949);
        let (l, y) = build_laid(
            "linear",
            "{out: 7, transposed: true}",
            &[&[2, 8, 100]],
            &seq(),
        )
        .unwrap();
        let x = [Shape(vec![2, 8, 100])];
        assert_eq!(
            l.convention_cost(Convention::Torchinfo, &x, &y).unwrap(),
            9898
        );
        assert_eq!(
            l.convention_cost(Convention::Fvcore, &x, &y).unwrap(),
            11200
        );
        // It runs x·W: with W = [[1, 2], [3, 4], [5, 6]] (3 → 2) and x = [1, 1, 1], y = [9, 12].
        use crate::kernels::Ctx;
        use crate::tensor::Tensor;
        let (l, _) = build_laid(
            "linear",
            "{out: 2, bias: false, transposed: true}",
            &[&[1, 2, 3]],
            &seq(),
        )
        .unwrap();
        let w = Tensor::new(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let x = Tensor::new(vec![1, 2, 3], vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let mut ctx = Ctx::default();
        let y = l.forward(&[&x], &[w], &mut ctx).unwrap();
        assert_eq!(y[0].data, vec![9.0, 12.0, 1.0, 2.0]);
        assert_eq!(ctx.macs, 2 * 2 * 3);
        // `tied` and `transposed` together are refused.
        let e = build_laid(
            "linear",
            "{out: 2, tied: wte, transposed: true}",
            &[&[1, 2, 3]],
            &seq(),
        )
        .unwrap_err();
        assert!(e.message.contains("`transposed` does not apply"), "{e}");
    }

    #[test]
    fn four_d_input_needs_flatten() {
        let e = build("linear", "{out: 10}", &[&[1, 512, 1, 1]]).unwrap_err();
        assert_eq!(
            e.message,
            "linear applies to the last dimension, and the last dimension of this 512×1×1 input (N×C×H×W) is the width (spatial axis 1): it would mix the 1 position along it instead of the 512 channels"
        );
        assert_eq!(
            e.help.as_deref(),
            Some("for a CNN head, flatten first: `{op: flatten}` (after a global pooling); to apply it to the channels at every position (channels-last, as ConvNeXt does), permute first: `{op: permute, dims: [0, 2, 3, 1]}`")
        );
        // A signal's length is a spatial axis too.
        let e = build("linear", "{out: 10}", &[&[1, 8, 100]]).unwrap_err();
        assert!(
            e.message.contains("is the length (spatial axis 0)"),
            "{}",
            e.message
        );
        assert!(e.help.unwrap().contains("dims: [0, 2, 1]"));
    }
}
