//! Arithmetic of one tensor with a constant (`x * 0.5`, `x / 3`, `2 - x`, `x ** 2`,
//! `(x − mean) / std` with a 1×3×1×1 mean): `{op: scalar, operator: add|sub|rsub|mul|div|rdiv|pow,
//! value: V}`, or with a tensor `{…, value: [v0, v1, …], shape: [1, 3, 1, 1]}` broadcast
//! against the input by NumPy's rules (aligned from the right, each of its dimensions 1 or the
//! input's; the output keeps the input's shape). `rsub` and `rdiv` put the constant first
//! (`V - x`, `V / x`). `kind` says what PyTorch counts the tensor as: `constant` (the default: a
//! Python number or a plain tensor attribute, counted nowhere), `buffer` (`register_buffer`:
//! counted in buffers) or `parameter` (an `nn.Parameter`: trainable parameters, with `value` its
//! initial values, the weight loaded under the layer's own name). `exp: true` (a buffer or
//! parameter only) applies exp(c) instead of c: a learned log-scale, CLIP's
//! `x * logit_scale.exp()`, whose stored weight is the log. Each element costs one FLOP (as
//! `add` and `multiply` count theirs), and `exp` one more per element of the tensor; no MACs,
//! and no profiler convention charges it.

use super::{
    mul, per_element, Arity, Attrs, Category, Collapsed, Cost, Counting, Kernel, Layer, Op, OpType,
    Params, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels;
use crate::kernels::Ctx;
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};
use crate::yaml::YValue;

/// Most elements of a constant tensor (`shape`'s product): the ONNX reader's folding limit
/// (`onnx::reader::MAX_FOLDED_ELEMENTS`, 2^20), checked before its values are read or filled.
pub const MAX_CONSTANT_ELEMENTS: u64 = 1 << 20;

pub const SCALAR: OpType = OpType {
    name: "scalar",
    aliases: &[],
    keys: &["operator", "value", "shape", "kind", "exp"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build,
    summary: "x ∘ value with a constant number, or a constant tensor of `shape` broadcast against x (operator: add, sub, rsub (value − x), mul, div, rdiv (value / x), pow; kind: constant, buffer, parameter)",
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

/// What PyTorch counts the constant as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A Python number or a plain tensor attribute: no parameter, no buffer.
    Constant,
    /// `register_buffer`: counted in buffers (state_dict), not trained.
    Buffer,
    /// `nn.Parameter`: trainable.
    Parameter,
}

#[derive(Debug, Clone)]
struct Scalar {
    operator: Operator,
    name: &'static str,
    kind: Kind,
    /// The constant's shape as PyTorch holds it (empty: a number, rank 0).
    shape: Vec<u64>,
    /// Its values, row-major (one for a number); a buffer's or parameter's initial values.
    values: Vec<f32>,
    /// The operation uses exp(c) (a learned log-scale); the weight is c.
    exp: bool,
}

fn build(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    if a.raw("operator")?.is_none() {
        return Err(a
            .error("operator", "`scalar` needs `operator`")
            .help("write e.g. `{op: scalar, operator: mul, value: 0.5}` (operator: add, sub, rsub, mul, div, rdiv, pow)"));
    }
    let name = a.choice("operator", &NAMES, "add")?;
    let operator = match name {
        "add" => Operator::Add,
        "sub" => Operator::Sub,
        "rsub" => Operator::Rsub,
        "mul" => Operator::Mul,
        "div" => Operator::Div,
        "rdiv" => Operator::Rdiv,
        _ => Operator::Pow,
    };
    let kind = match a.choice("kind", &["constant", "buffer", "parameter"], "constant")? {
        "buffer" => Kind::Buffer,
        "parameter" => Kind::Parameter,
        _ => Kind::Constant,
    };
    let exp = a.bool("exp", false)?;
    if exp && kind == Kind::Constant {
        return Err(a
            .error("exp", "`exp: true` applies to a buffer's or parameter's values; this constant is neither")
            .help("write the constant's exponential as its `value`, or give `kind: parameter` (a learned log-scale)"));
    }
    let shape = a.int_list("shape")?.unwrap_or_default();
    let rank_in = a.inputs.first().map_or(0, Shape::rank);
    if shape.len() > rank_in {
        return Err(a
            .error("shape", format!("the constant has {} dimensions and the input {rank_in}", shape.len()))
            .help("a constant broadcasts against the input aligned from the right: give it at most the input's dimensions, e.g. `shape: [1, 3, 1, 1]` for one number per channel of N×3×H×W"));
    }
    let count = Shape(shape.clone())
        .numel()
        .map_err(|d| d.at(&a.node_path))?;
    if count > MAX_CONSTANT_ELEMENTS {
        return Err(a
            .error(
                "shape",
                format!("a constant of {count} elements; archscope's largest is 2^20 = {MAX_CONSTANT_ELEMENTS}"),
            )
            .help("a larger tensor is a learned weight: write a `parameter` layer and `add`/`multiply`"));
    }
    // NumPy's broadcasting, aligned from the right; the output keeps the input's shape.
    if let Some(input) = a.inputs.first() {
        let off = input.rank() - shape.len();
        for (k, &c) in shape.iter().enumerate() {
            let d = input.0[off + k];
            if c != 1 && c != d {
                return Err(a
                    .error(
                        "shape",
                        format!(
                            "`shape: {shape:?}` does not broadcast against the input {input}: its dimension {k} is {c} where the input's dimension {} is {d}",
                            off + k
                        ),
                    )
                    .help(format!("each dimension of the constant, aligned from the right, is 1 or the input's size (here {d})")));
            }
        }
    }
    let values: Vec<f32> = match a.raw("value")? {
        None if kind == Kind::Constant => {
            return Err(a
                .error("value", "`scalar` needs `value` (the constant)")
                .help(format!(
                    "write e.g. `{{op: scalar, operator: {name}, value: 2}}`, or a list with its `shape`"
                )))
        }
        // A buffer's or parameter's initial value: ones, as `torch.ones(shape)`.
        None => vec![1.0; count as usize],
        Some(v) if matches!(v.value, YValue::Seq(_)) => {
            let Some(list) = a.float_list("value")? else {
                unreachable!("`value` was given")
            };
            if a.inputs.is_empty() || list.len() as u64 != count || shape.is_empty() {
                let msg = if shape.is_empty() {
                    format!("`value` lists {} numbers but no `shape` is given", list.len())
                } else {
                    format!(
                        "`value` lists {} numbers where `shape: {shape:?}` holds {count}",
                        list.len()
                    )
                };
                return Err(a
                    .error("value", msg)
                    .help("give one number per element of `shape`, row-major (or one number, which fills it)"));
            }
            let mut out = Vec::with_capacity(list.len());
            for (k, x) in list.into_iter().enumerate() {
                out.push(finite(a, x, Some(k))?);
            }
            out
        }
        Some(_) => {
            let v = a.float("value", 0.0)?;
            let x = finite(a, v, None)?;
            vec![x; count as usize]
        }
    };
    if operator == Operator::Div && kind == Kind::Constant {
        if let Some(k) = values.iter().position(|&v| v == 0.0) {
            let at = if shape.is_empty() {
                String::new()
            } else {
                format!(" (element {k})")
            };
            return Err(a
                .error(
                    "value",
                    format!("`operator: div` by `value: 0`{at} divides by zero"),
                )
                .help("use a non-zero value (or `operator: mul` by the reciprocal)"));
        }
    }
    Ok(Box::new(Scalar {
        operator,
        name,
        kind,
        shape,
        values,
        exp,
    }))
}

/// `x` as an f32, or the located error for a number that does not fit one.
fn finite(a: &Attrs, x: f64, k: Option<usize>) -> Result<f32, Diagnostic> {
    let v = x as f32;
    if v.is_finite() {
        return Ok(v);
    }
    let which = k.map_or(String::new(), |k| format!(" (element {k})"));
    Err(a
        .error(
            "value",
            format!("`value: {x}`{which} does not fit a 32-bit float"),
        )
        .help("use a value of magnitude below 3.4e38"))
}

/// The operation on one element, `c` the constant's value there.
#[inline(always)]
fn apply(op: Operator, x: f32, c: f32) -> f32 {
    match op {
        Operator::Add => x + c,
        Operator::Sub => x - c,
        Operator::Rsub => c - x,
        Operator::Mul => x * c,
        Operator::Div => x / c,
        Operator::Rdiv => c / x,
        // x·x: exact, as onnxruntime's Pow computes it.
        Operator::Pow if c == 2.0 => x * x,
        Operator::Pow => x.powf(c),
    }
}

/// `dst[i] = src[i] ∘ c`, one constant value: the match outside the loop, so each loop is
/// one vector operation.
#[inline(always)]
fn run_one(op: Operator, c: f32, src: &[f32], dst: &mut [f32]) {
    let it = dst.iter_mut().zip(src);
    match op {
        Operator::Add => it.for_each(|(d, &x)| *d = x + c),
        Operator::Sub => it.for_each(|(d, &x)| *d = x - c),
        Operator::Rsub => it.for_each(|(d, &x)| *d = c - x),
        Operator::Mul => it.for_each(|(d, &x)| *d = x * c),
        Operator::Div => it.for_each(|(d, &x)| *d = x / c),
        Operator::Rdiv => it.for_each(|(d, &x)| *d = c / x),
        Operator::Pow if c == 2.0 => it.for_each(|(d, &x)| *d = x * x),
        Operator::Pow => it.for_each(|(d, &x)| *d = x.powf(c)),
    }
}

/// `dst[i] = src[i] ∘ c[i]`, element by element.
#[inline(always)]
fn run_zip(op: Operator, c: &[f32], src: &[f32], dst: &mut [f32]) {
    let it = dst.iter_mut().zip(src).zip(c);
    match op {
        Operator::Add => it.for_each(|((d, &x), &c)| *d = x + c),
        Operator::Sub => it.for_each(|((d, &x), &c)| *d = x - c),
        Operator::Rsub => it.for_each(|((d, &x), &c)| *d = c - x),
        Operator::Mul => it.for_each(|((d, &x), &c)| *d = x * c),
        Operator::Div => it.for_each(|((d, &x), &c)| *d = x / c),
        Operator::Rdiv => it.for_each(|((d, &x), &c)| *d = c / x),
        Operator::Pow => it.for_each(|((d, &x), &c)| *d = apply(Operator::Pow, x, c)),
    }
}

/// Where a constant of `cshape` meets an input of `xshape` (NumPy's broadcasting, already
/// checked): the input's dimensions from the first to the last where the constant is not 1,
/// and the length of the runs after the last that share one constant value. `None` when the
/// constant holds one value everywhere.
fn spans(xshape: &[usize], cshape: &[u64]) -> Option<(usize, usize, usize)> {
    let off = xshape.len() - cshape.len();
    let first = cshape.iter().position(|&c| c != 1)? + off;
    let last = cshape.iter().rposition(|&c| c != 1)? + off;
    let inner = xshape[last + 1..].iter().product();
    Some((first, last, inner))
}

/// The constant's index for the element at multi-index `idx` of the input's dimensions
/// `from..=to` (the others are 1 in the constant).
fn const_index(idx: usize, xshape: &[usize], cshape: &[u64], from: usize, to: usize) -> usize {
    let off = xshape.len() - cshape.len();
    let (mut rest, mut at, mut stride) = (idx, 0, 1);
    for k in (from..=to).rev() {
        let d = xshape[k];
        let c = if k < off { 1 } else { cshape[k - off] as usize };
        if c != 1 {
            at += (rest % d) * stride;
        }
        rest /= d;
        stride *= c;
    }
    at
}

/// Runs of at least this many elements sharing one constant value are computed run by run
/// (a per-channel constant on a feature map); shorter ones against the constant expanded once.
const MIN_RUN: usize = 32;

impl Scalar {
    fn number(&self) -> Option<f32> {
        (self.shape.is_empty() && self.values.len() == 1).then(|| self.values[0])
    }
}

impl Op for Scalar {
    fn op(&self) -> &'static str {
        "scalar"
    }
    fn label(&self) -> String {
        // A buffer's or parameter's values are its weight's, not shown.
        let c = match (self.kind, self.number()) {
            (Kind::Constant, Some(v)) => format!("{v}"),
            (_, _) if self.shape.is_empty() => "c".to_string(),
            _ => format!("c[{}]", Shape(self.shape.clone())),
        };
        let s = match self.operator {
            Operator::Add => format!("x + {c}"),
            Operator::Sub => format!("x − {c}"),
            Operator::Rsub => format!("{c} − x"),
            Operator::Mul => format!("x × {c}"),
            Operator::Div => format!("x / {c}"),
            Operator::Rdiv => format!("{c} / x"),
            Operator::Pow => format!("x ^ {c}"),
        };
        let s = if self.exp {
            s.replace(&c, &format!("exp({c})"))
        } else {
            s
        };
        match self.kind {
            Kind::Constant => s,
            Kind::Buffer => format!("{s} (buffer)"),
            Kind::Parameter => format!("{s} (learned)"),
        }
    }
    fn category(&self) -> Category {
        Category::Merge
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let x = &inputs[0];
        let off = x.rank().checked_sub(self.shape.len());
        let fits = off.is_some_and(|off| {
            self.shape
                .iter()
                .enumerate()
                .all(|(k, &c)| c == 1 || c == x.0[off + k])
        });
        if !fits {
            return Err(Diagnostic::new(format!(
                "a constant of shape {} does not broadcast against the input {x}",
                Shape(self.shape.clone())
            ))
            .help(
                "each dimension of the constant, aligned from the right, is 1 or the input's size",
            ));
        }
        Ok(vec![x.clone()])
    }
    fn params(&self) -> Params {
        let n = self.values.len() as u64;
        match self.kind {
            Kind::Constant => Params::default(),
            Kind::Buffer => Params {
                buffers: n,
                ..Default::default()
            },
            Kind::Parameter => Params {
                trainable: n,
                ..Default::default()
            },
        }
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // One operation per element, as `add` and `multiply` count theirs (and one exp per
        // element of the tensor).
        let exps = if self.exp {
            self.values.len() as u64
        } else {
            0
        };
        Ok(Cost {
            macs: 0,
            flops: per_element(&inputs[0], 1)?.saturating_add(exps),
        })
    }
}

impl Kernel for Scalar {
    /// The ONNX operator (`Add`, `Sub`, `Mul`, `Div`, `Pow`) with the constant (rank 0 for a
    /// number, else of its shape; a buffer's or parameter's is its weight), first for `rsub`
    /// and `rdiv`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let c = match (self.kind, self.number()) {
            (Kind::Buffer | Kind::Parameter, _) if self.exp => {
                let w = e.weight(0);
                e.step("Exp", &[&w], vec![])
            }
            (Kind::Buffer | Kind::Parameter, _) => e.weight(0),
            (Kind::Constant, Some(v)) => e.scalar(self.name, v),
            (Kind::Constant, None) => {
                let dims: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
                e.floats(self.name, &dims, self.values.clone())
            }
        };
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
    fn weights(&self) -> Vec<WeightSpec> {
        let kind = match self.kind {
            Kind::Constant => return Vec::new(),
            Kind::Buffer => WeightKind::Buffer,
            Kind::Parameter => WeightKind::Trainable,
        };
        // Loaded under the layer's own name, as a `parameter` is (PyTorch's `self.gain`).
        vec![WeightSpec {
            name: "",
            shape: self.shape.iter().map(|&d| d as usize).collect(),
            kind,
            init: Init::Fixed(self.values.clone()),
        }]
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        let x = inputs[0];
        let c: &[f32] = match self.kind {
            Kind::Constant => &self.values,
            _ => match weights.first() {
                Some(w) if w.data.len() == self.values.len() => &w.data,
                _ => {
                    return Err(Diagnostic::new(format!(
                        "the constant's weight has no {} values",
                        self.values.len()
                    ))
                    .help("load weights of the layer's shape"))
                }
            },
        };
        let exps: Vec<f32>;
        let c: &[f32] = if self.exp {
            exps = c.iter().map(|v| v.exp()).collect();
            &exps
        } else {
            c
        };
        let mut out = ctx.output(&x.shape);
        let op = self.operator;
        let Some((first, last, inner)) = spans(&x.shape, &self.shape) else {
            // One value everywhere.
            let v = c[0];
            out.data
                .par_chunks_mut(CHUNK)
                .zip(x.data.par_chunks(CHUNK))
                .for_each(|(dst, src)| {
                    kernels::vectorised(
                        #[inline(always)]
                        || run_one(op, v, src, dst),
                    )
                });
            return Ok(vec![out]);
        };
        if inner >= MIN_RUN {
            // Runs of `inner` elements, one constant value each (per-channel constants).
            let per = (CHUNK / inner).max(1);
            out.data
                .par_chunks_mut(per * inner)
                .zip(x.data.par_chunks(per * inner))
                .enumerate()
                .for_each(|(b, (dst, src))| {
                    for (j, (d, s)) in dst.chunks_mut(inner).zip(src.chunks(inner)).enumerate() {
                        let v = c[const_index(b * per + j, &x.shape, &self.shape, 0, last)];
                        kernels::vectorised(
                            #[inline(always)]
                            || run_one(op, v, s, d),
                        );
                    }
                });
        } else {
            // The constant expanded over the input's dimensions from `first` on (the pattern
            // repeats along the dimensions before), then element by element.
            let period: usize = x.shape[first..].iter().product();
            let e: Vec<f32> = (0..period)
                .map(|i| c[const_index(i, &x.shape, &self.shape, first, x.shape.len() - 1)])
                .collect();
            out.data
                .par_chunks_mut(period)
                .zip(x.data.par_chunks(period))
                .for_each(|(dst, src)| {
                    kernels::vectorised(
                        #[inline(always)]
                        || run_zip(op, &e, src, dst),
                    )
                });
        }
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
        // two products, three FLOPs); `c / x` with a number c is `reciprocal(x) · c`, which
        // keeps the reciprocal, the output's size (−c·r²·g: three FLOPs); with a tensor c it is
        // `div(c, x)`, which keeps x (−g·c/x²: three FLOPs).
        let y = outputs[0].numel()?;
        let number = self.number().is_some();
        let (per, mut saved_input, saved_output) = match self.operator {
            Operator::Add | Operator::Sub => (0, false, false),
            Operator::Rsub | Operator::Mul | Operator::Div => (1, false, false),
            Operator::Pow => (3, true, false),
            Operator::Rdiv if number => (3, false, true),
            Operator::Rdiv => (3, true, false),
        };
        let mut backward = if input_grad { mul(&[y, per])? } else { 0 };
        if self.kind == Kind::Parameter {
            // The parameter's gradient, summed over the broadcast positions (one FLOP per
            // element for the sum): `±g` (add, sub, rsub); `g·x` (mul, keeps x); `−g·x/c²`
            // (div, keeps x: a product, a division and the sum, c² on the parameter alone);
            // `g/x` (rdiv, keeps x); `g·y·ln x` (pow, keeps x and y; its log, two products and
            // the sum).
            let (wper, keeps_x) = match self.operator {
                Operator::Add | Operator::Sub | Operator::Rsub => (1, false),
                Operator::Mul | Operator::Rdiv => (2, true),
                Operator::Div => (3, true),
                Operator::Pow => (4, true),
            };
            backward = backward.saturating_add(mul(&[y, wper])?);
            if self.exp {
                // d exp(c) = exp(c)·dc: one product per element of the tensor.
                backward = backward.saturating_add(self.values.len() as u64);
            }
            saved_input |= keeps_x;
        }
        let saved_output =
            saved_output || (self.kind == Kind::Parameter && self.operator == Operator::Pow);
        Ok(Training {
            forward_flops: self.cost(inputs, outputs)?.flops,
            backward_flops: backward,
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

    /// The forward of `attrs` on `x` of shape `shape` (weights from the layer's own values).
    fn run_on(attrs: &str, shape: &[u64], x: Vec<f32>) -> Vec<f32> {
        let (l, o) = build("scalar", attrs, &[shape]).unwrap();
        assert_eq!(o[0].0, shape);
        let w: Vec<Tensor> = l
            .weights()
            .into_iter()
            .map(|s| match s.init {
                crate::tensor::Init::Fixed(v) => Tensor {
                    shape: s.shape,
                    data: v,
                },
                other => panic!("{other:?}"),
            })
            .collect();
        let t = Tensor {
            shape: shape.iter().map(|&d| d as usize).collect(),
            data: x,
        };
        let mut ctx = Ctx::default();
        l.forward(&[&t], &w, &mut ctx).unwrap().remove(0).data
    }

    #[test]
    fn tensor_constants_broadcast_by_hand() {
        // (x − mean) per channel on 1×2×1×2 = [[1, 2], [3, 4]]: mean [10, 20].
        assert_eq!(
            run_on(
                "{operator: sub, value: [10, 20], shape: [1, 2, 1, 1]}",
                &[1, 2, 1, 2],
                vec![1.0, 2.0, 3.0, 4.0]
            ),
            [-9.0, -8.0, -17.0, -16.0]
        );
        // Along the last axis (runs of one element: the expanded path), aligned from the
        // right: [2, 4] divides each row of 1×2×2.
        assert_eq!(
            run_on(
                "{operator: div, value: [2, 4], shape: [2]}",
                &[1, 2, 2],
                vec![1.0, 2.0, 3.0, 4.0]
            ),
            [0.5, 0.5, 1.5, 1.0]
        );
        // rdiv and rsub with the constant first; pow with per-channel exponents [2, 3].
        assert_eq!(
            run_on(
                "{operator: rdiv, value: [1, 8], shape: [2, 1]}",
                &[1, 2, 2],
                vec![1.0, 2.0, 4.0, 8.0]
            ),
            [1.0, 0.5, 2.0, 1.0]
        );
        assert_eq!(
            run_on(
                "{operator: pow, value: [2, 3], shape: [2, 1]}",
                &[1, 2, 2],
                vec![3.0, -2.0, 2.0, -1.0]
            ),
            [9.0, 4.0, 8.0, -1.0]
        );
        // A 2×3 constant on 2×2×3 (batch 2): the pattern repeats per sample.
        assert_eq!(
            run_on(
                "{operator: rsub, value: [1, 2, 3, 4, 5, 6], shape: [2, 3]}",
                &[2, 2, 3],
                vec![0.0; 12]
            ),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        // Per channel on maps of 8×8 = 64 ≥ MIN_RUN elements (the run-by-run path): channel c
        // of sample n multiplied by [1, 2, 3][c].
        let x = vec![1.0f32; 2 * 3 * 64];
        let y = run_on(
            "{operator: mul, value: [1, 2, 3], shape: [3, 1, 1]}",
            &[2, 3, 8, 8],
            x,
        );
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, ((i / 64) % 3 + 1) as f32, "element {i}");
        }
        // A number filling a shape: a learned gain of shape [1] (PyTorch's
        // nn.Parameter(torch.ones(1) * 1.5)).
        assert_eq!(
            run_on(
                "{operator: mul, value: 1.5, shape: [1], kind: parameter}",
                &[1, 2],
                vec![2.0, -4.0]
            ),
            [3.0, -6.0]
        );
    }

    #[test]
    fn kinds_count_as_pytorch() {
        use crate::layers::Params;
        for (kind, want) in [
            ("constant", Params::default()),
            (
                "buffer",
                Params {
                    buffers: 3,
                    ..Default::default()
                },
            ),
            (
                "parameter",
                Params {
                    trainable: 3,
                    ..Default::default()
                },
            ),
        ] {
            let (l, _) = build(
                "scalar",
                &format!("{{operator: sub, value: [1, 2, 3], shape: [1, 3, 1, 1], kind: {kind}}}"),
                &[&[1, 3, 4, 4]],
            )
            .unwrap();
            assert_eq!(l.params(), want, "{kind}");
            assert_eq!(l.weights().len(), usize::from(kind != "constant"), "{kind}");
        }
        // A learned gain of shape [1] (mul): the input's gradient g·c (1 per element) and the
        // parameter's Σ g·x (2 per element), the input kept; on 1×4: 4 + 8.
        let x = [crate::layers::Shape(vec![1, 4])];
        let (l, o) = build(
            "scalar",
            "{operator: mul, value: 1, shape: [1], kind: parameter}",
            &[&[1, 4]],
        )
        .unwrap();
        let t = l.training(&x, &o, true, 4).unwrap();
        assert_eq!((t.forward_flops, t.backward_flops), (4, 12));
        assert_eq!(t.saved.inputs, vec![0]);
        assert_eq!(l.label(), "x × c[1] (learned)");
        // A tensor `c / x` is div(c, x): x kept, not the output.
        let (l, o) = build(
            "scalar",
            "{operator: rdiv, value: [1, 2, 3, 4], shape: [4]}",
            &[&[1, 4]],
        )
        .unwrap();
        let t = l.training(&x, &o, true, 4).unwrap();
        assert_eq!(t.saved.inputs, vec![0]);
        assert!(!t.saved.output);
        assert_eq!(l.label(), "c[4] / x");
    }

    #[test]
    fn exp_applies_the_exponential_of_a_learned_log_scale() {
        // CLIP's x · logit_scale.exp() with logit_scale = ln 2: x · 2.
        let y = run_on(
            &format!(
                "{{operator: mul, value: {}, kind: parameter, exp: true}}",
                std::f32::consts::LN_2
            ),
            &[1, 2],
            vec![2.0, -4.0],
        );
        assert!(
            (y[0] - 4.0).abs() < 1e-6 && (y[1] + 8.0).abs() < 1e-6,
            "{y:?}"
        );
        let x = [crate::layers::Shape(vec![1, 4])];
        let (l, o) = build(
            "scalar",
            "{operator: mul, value: 0, kind: parameter, exp: true}",
            &[&[1, 4]],
        )
        .unwrap();
        // One parameter (the log); four products and one exp.
        assert_eq!(l.params().trainable, 1);
        assert_eq!(l.cost(&x, &o).unwrap().flops, 5);
        assert_eq!(l.label(), "x × exp(c) (learned)");
        let Err(e) = build("scalar", "{operator: mul, value: 2, exp: true}", &[&[1, 4]]) else {
            panic!("refused")
        };
        assert!(
            e.message
                .contains("`exp: true` applies to a buffer's or parameter's values"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_learned_constant_adds_its_gradient() {
        // On 1×4 (4 elements), `kind: parameter` of shape [1]: (operator, backward FLOPs =
        // the input's (0, 1 or 3 per element, as `training_saves_what_autograd_keeps`) + the
        // parameter's summed gradient (1, 2, 3 or 4 per element), input kept, output kept).
        let x = [crate::layers::Shape(vec![1, 4])];
        for (op, backward, input, output) in [
            ("add", 4, false, false),
            ("sub", 4, false, false),
            ("rsub", 4 + 4, false, false),
            ("mul", 4 + 8, true, false),
            ("div", 4 + 12, true, false),
            ("rdiv", 12 + 8, true, false),
            ("pow", 12 + 16, true, true),
        ] {
            let (l, o) = build(
                "scalar",
                &format!("{{operator: {op}, value: 2, shape: [1], kind: parameter}}"),
                &[&[1, 4]],
            )
            .unwrap();
            let t = l.training(&x, &o, true, 4).unwrap();
            assert_eq!(t.forward_flops, 4, "{op}");
            assert_eq!(t.backward_flops, backward, "{op}");
            assert_eq!(!t.saved.inputs.is_empty(), input, "{op}");
            assert_eq!(t.saved.output, output, "{op}");
            // Without an input gradient, the parameter's alone.
            let t = l.training(&x, &o, false, 4).unwrap();
            let per = match op {
                "add" | "sub" | "rsub" => 1,
                "mul" | "rdiv" => 2,
                "div" => 3,
                _ => 4,
            };
            assert_eq!(t.backward_flops, 4 * per, "{op}");
        }
    }

    #[test]
    fn tensor_errors_name_the_fix() {
        let e = build(
            "scalar",
            "{operator: sub, value: [1, 2, 3, 4], shape: [1, 4, 1, 1]}",
            &[&[1, 3, 8, 8]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "`shape: [1, 4, 1, 1]` does not broadcast against the input 1×3×8×8: its dimension 1 is 4 where the input's dimension 1 is 3"
        );
        let e = build(
            "scalar",
            "{operator: sub, value: [1, 2, 3], shape: [1, 3, 1, 1]}",
            &[&[3, 8]],
        )
        .unwrap_err();
        assert_eq!(e.message, "the constant has 4 dimensions and the input 2");
        let e = build(
            "scalar",
            "{operator: sub, value: [1, 2], shape: [1, 3, 1, 1]}",
            &[&[1, 3, 8, 8]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "`value` lists 2 numbers where `shape: [1, 3, 1, 1]` holds 3"
        );
        let e = build("scalar", "{operator: sub, value: [1, 2]}", &[&[1, 2]]).unwrap_err();
        assert_eq!(e.message, "`value` lists 2 numbers but no `shape` is given");
        let e = build(
            "scalar",
            "{operator: div, value: [1, 0, 2], shape: [3, 1, 1]}",
            &[&[1, 3, 2, 2]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "`operator: div` by `value: 0` (element 1) divides by zero"
        );
        let e = build(
            "scalar",
            "{operator: mul, value: [1, 1e39], shape: [2]}",
            &[&[1, 2]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "`value: 1000000000000000000000000000000000000000` (element 1) does not fit a 32-bit float"
        );
        let e = build(
            "scalar",
            "{operator: mul, value: 1, shape: [2048, 1024]}",
            &[&[1, 2048, 1024]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "a constant of 2097152 elements; archscope's largest is 2^20 = 1048576"
        );
        let e = build(
            "scalar",
            "{operator: mul, value: 1, kind: fixed}",
            &[&[1, 2]],
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("`kind: fixed` is not one of constant, buffer, parameter"),
            "{e}"
        );
    }

    #[test]
    fn shortest_f32_text_reads_back_bit_for_bit() {
        // The ONNX reader writes each f32 value as Rust's shortest text for it (`{:?}`); the
        // YAML reads it as f64 and `value` rounds it to f32: the same bits, over a spread of
        // magnitudes and mantissas (a 64-bit LCG's high bits as f32 bit patterns).
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut checked = 0;
        for _ in 0..200_000 {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let v = f32::from_bits((s >> 32) as u32);
            if !v.is_finite() {
                continue;
            }
            let back = format!("{v:?}").parse::<f64>().unwrap() as f32;
            assert_eq!(back.to_bits(), v.to_bits(), "{v:?}");
            checked += 1;
        }
        assert!(checked > 190_000);
    }
}
