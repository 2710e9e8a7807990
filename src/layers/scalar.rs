//! Arithmetic of one tensor with a constant number (`x * 0.5`, `x / 3`, `2 - x`, `x ** 2`):
//! `{op: scalar, operator: add|sub|rsub|mul|div|rdiv|pow, value: V}`. `rsub` and `rdiv` put the
//! constant first (`V - x`, `V / x`). The output has the input's shape; each element costs one
//! FLOP (as `add` and `multiply` count theirs), no MACs, and no profiler convention charges it.

use super::{
    mul, per_element, Arity, Attrs, Category, Collapsed, Cost, Counting, Kernel, Layer, Op, OpType,
    Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels;
use crate::kernels::Ctx;
use crate::tensor::Tensor;

pub const SCALAR: OpType = OpType {
    name: "scalar",
    aliases: &[],
    keys: &["operator", "value"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    build,
    summary: "x ∘ value with a constant number (operator: add, sub, rsub (value − x), mul, div, rdiv (value / x), pow)",
};

/// The operation, with the constant's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Add,
    Sub,
    Rsub,
    Mul,
    Div,
    Rdiv,
    Pow,
}

const NAMES: [&str; 7] = ["add", "sub", "rsub", "mul", "div", "rdiv", "pow"];

#[derive(Debug, Clone)]
struct Scalar {
    operator: Operator,
    name: &'static str,
    value: f32,
}

fn build(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    if a.raw("operator")?.is_none() {
        return Err(a
            .error("operator", "`scalar` needs `operator`")
            .help("write e.g. `{op: scalar, operator: mul, value: 0.5}` (operator: add, sub, rsub, mul, div, rdiv, pow)"));
    }
    let name = a.choice("operator", &NAMES, "add")?;
    if a.raw("value")?.is_none() {
        return Err(a
            .error("value", "`scalar` needs `value` (the constant)")
            .help(format!(
                "write e.g. `{{op: scalar, operator: {name}, value: 2}}`"
            )));
    }
    let v = a.float("value", 0.0)?;
    let value = v as f32;
    if !value.is_finite() {
        return Err(a
            .error("value", format!("`value: {v}` does not fit a 32-bit float"))
            .help("use a value of magnitude below 3.4e38"));
    }
    let operator = match name {
        "add" => Operator::Add,
        "sub" => Operator::Sub,
        "rsub" => Operator::Rsub,
        "mul" => Operator::Mul,
        "div" => Operator::Div,
        "rdiv" => Operator::Rdiv,
        _ => Operator::Pow,
    };
    if operator == Operator::Div && value == 0.0 {
        return Err(a
            .error("value", "`operator: div` by `value: 0` divides by zero")
            .help("use a non-zero value (or `operator: mul` by the reciprocal)"));
    }
    Ok(Box::new(Scalar {
        operator,
        name,
        value,
    }))
}

impl Scalar {
    /// The operation on one element.
    #[inline(always)]
    fn apply(&self, x: f32) -> f32 {
        let v = self.value;
        match self.operator {
            Operator::Add => x + v,
            Operator::Sub => x - v,
            Operator::Rsub => v - x,
            Operator::Mul => x * v,
            Operator::Div => x / v,
            Operator::Rdiv => v / x,
            Operator::Pow => x.powf(v),
        }
    }
}

impl Op for Scalar {
    fn op(&self) -> &'static str {
        "scalar"
    }
    fn label(&self) -> String {
        let v = self.value;
        match self.operator {
            Operator::Add => format!("x + {v}"),
            Operator::Sub => format!("x − {v}"),
            Operator::Rsub => format!("{v} − x"),
            Operator::Mul => format!("x × {v}"),
            Operator::Div => format!("x / {v}"),
            Operator::Rdiv => format!("{v} / x"),
            Operator::Pow => format!("x ^ {v}"),
        }
    }
    fn category(&self) -> Category {
        Category::Merge
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // One operation per element, as `add` and `multiply` count theirs.
        Ok(Cost {
            macs: 0,
            flops: per_element(&inputs[0], 1)?,
        })
    }
}

impl Kernel for Scalar {
    /// The ONNX operator (`Add`, `Sub`, `Mul`, `Div`, `Pow`) with a rank-0 constant, first for
    /// `rsub` and `rdiv`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let c = e.scalar(self.name, self.value);
        let (op, a, b) = match self.operator {
            Operator::Add => ("Add", &x, &c),
            Operator::Sub => ("Sub", &x, &c),
            Operator::Rsub => ("Sub", &c, &x),
            Operator::Mul => ("Mul", &x, &c),
            Operator::Div => ("Div", &x, &c),
            Operator::Rdiv => ("Div", &c, &x),
            Operator::Pow => ("Pow", &x, &c),
        };
        e.node(op, &[a, b], &[&out], vec![]);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // Element-wise: each output unit sees the unit at its own position.
        Collapsed::Identity
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        let x = inputs[0];
        let mut out = ctx.output(&x.shape);
        let square = self.operator == Operator::Pow && self.value == 2.0;
        out.data
            .par_chunks_mut(CHUNK)
            .zip(x.data.par_chunks(CHUNK))
            .for_each(|(dst, src)| {
                kernels::vectorised(
                    #[inline(always)]
                    || {
                        if square {
                            // x·x: exact, as onnxruntime's Pow computes it.
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d = v * v;
                            }
                        } else {
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d = self.apply(v);
                            }
                        }
                    },
                )
            });
        Ok(vec![out])
    }
}

impl Counting for Scalar {
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // What PyTorch's autograd keeps: `x ± c` and `c − x` nothing (the gradient is passed
        // on, negated for `c − x`: one FLOP per element); `x · c` and `x / c` nothing (the
        // gradient times the constant: one FLOP); `x ** c` its input (c·x^(c−1)·g: a power and
        // two products, three FLOPs); `c / x` is `reciprocal(x) · c`, which keeps the
        // reciprocal, the output's size (−c·r²·g: three FLOPs).
        let y = outputs[0].numel()?;
        let (per, saved_input, saved_output) = match self.operator {
            Operator::Add | Operator::Sub => (0, false, false),
            Operator::Rsub | Operator::Mul | Operator::Div => (1, false, false),
            Operator::Pow => (3, true, false),
            Operator::Rdiv => (3, false, true),
        };
        Ok(Training {
            forward_flops: self.cost(inputs, outputs)?.flops,
            backward_flops: if input_grad { mul(&[y, per])? } else { 0 },
            saved: Saved {
                inputs: if saved_input { vec![0] } else { vec![] },
                output: saved_output,
                ..Default::default()
            },
            view: false,
            // `x ± c` hands the output gradient on as it is.
            grad_views: if per == 0 { vec![0] } else { vec![] },
            cublas: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::Ctx;
    use crate::layers::testutil::build;
    use crate::tensor::Tensor;

    /// The layer's forward on [−2, −0.5, 1, 3] (shape 1×4).
    fn run(attrs: &str) -> Vec<f32> {
        let (l, o) = build("scalar", attrs, &[&[1, 4]]).unwrap();
        assert_eq!(o[0].0, vec![1, 4]);
        let x = Tensor {
            shape: vec![1, 4],
            data: vec![-2.0, -0.5, 1.0, 3.0],
        };
        let mut ctx = Ctx::default();
        l.forward(&[&x], &[], &mut ctx).unwrap().remove(0).data
    }

    #[test]
    fn every_operator_by_hand() {
        // x = [−2, −0.5, 1, 3], by hand:
        assert_eq!(run("{operator: add, value: 1}"), [-1.0, 0.5, 2.0, 4.0]);
        assert_eq!(run("{operator: sub, value: 2}"), [-4.0, -2.5, -1.0, 1.0]);
        assert_eq!(run("{operator: rsub, value: 2}"), [4.0, 2.5, 1.0, -1.0]);
        assert_eq!(run("{operator: mul, value: 0.5}"), [-1.0, -0.25, 0.5, 1.5]);
        assert_eq!(run("{operator: div, value: 4}"), [-0.5, -0.125, 0.25, 0.75]);
        assert_eq!(
            run("{operator: rdiv, value: 1}"),
            [-0.5, -2.0, 1.0, 1.0 / 3.0]
        );
        assert_eq!(run("{operator: pow, value: 2}"), [4.0, 0.25, 1.0, 9.0]);
        assert_eq!(run("{operator: pow, value: 3}"), [-8.0, -0.125, 1.0, 27.0]);
    }

    #[test]
    fn training_saves_what_autograd_keeps() {
        // On 1×4 (4 elements): (operator, saves input, saves output, backward FLOPs, grad view).
        let x = [crate::layers::Shape(vec![1, 4])];
        for (op, input, output, backward, view) in [
            ("add", false, false, 0, true),
            ("sub", false, false, 0, true),
            ("rsub", false, false, 4, false),
            ("mul", false, false, 4, false),
            ("div", false, false, 4, false),
            ("pow", true, false, 12, false),
            ("rdiv", false, true, 12, false),
        ] {
            let (l, o) = build(
                "scalar",
                &format!("{{operator: {op}, value: 2}}"),
                &[&[1, 4]],
            )
            .unwrap();
            let t = l.training(&x, &o, true, 4).unwrap();
            assert_eq!(t.forward_flops, 4, "{op}");
            assert_eq!(t.saved.inputs.is_empty(), !input, "{op}");
            assert_eq!(t.saved.output, output, "{op}");
            assert_eq!(t.backward_flops, backward, "{op}");
            assert_eq!(t.grad_views == vec![0], view, "{op}");
        }
    }

    #[test]
    fn cost_and_errors() {
        // 1×4 elements, one FLOP each.
        let (l, o) = build("scalar", "{operator: mul, value: 3}", &[&[1, 4]]).unwrap();
        let c = l.cost(&[crate::layers::Shape(vec![1, 4])], &o).unwrap();
        assert_eq!((c.macs, c.flops), (0, 4));
        let e = build("scalar", "{operator: times, value: 3}", &[&[1, 4]]).unwrap_err();
        assert!(
            e.message
                .contains("`operator: times` is not one of add, sub, rsub, mul, div, rdiv, pow"),
            "{e}"
        );
        let e = build("scalar", "{value: 3}", &[&[1, 4]]).unwrap_err();
        assert_eq!(e.message, "`scalar` needs `operator`");
        let e = build("scalar", "{operator: mul}", &[&[1, 4]]).unwrap_err();
        assert_eq!(e.message, "`scalar` needs `value` (the constant)");
        let e = build("scalar", "{operator: div, value: 0}", &[&[1, 4]]).unwrap_err();
        assert!(e.message.contains("divides by zero"), "{e}");
        let e = build("scalar", "{operator: mul, value: 1e39}", &[&[1, 4]]).unwrap_err();
        assert!(e.message.contains("32-bit"), "{e}");
    }
}
