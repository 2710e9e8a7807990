//! Activation functions. One struct serves them all; what differs (its kind, an `Act`, options,
//! PyTorch module, per-element FLOPs) is in the table of registrations below, and the code
//! matches on the kind, never on a name. PReLU is the one with parameters.

use super::Convention;
use super::{
    mul, per_element, Arity, AttrDefault, Attrs, Category, Collapsed, Cost, Counting, Geometry,
    Kernel, Layer, Op, OpType, Params, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::kernels::Pointwise;
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};

/// Keys every activation accepts besides its own: `functional: true` says the PyTorch model
/// calls the function (`F.relu(x)`) rather than a module (`nn.ReLU`). Shapes and costs are the
/// same; profilers that hook modules see it differently (docs/COUNTING.md).
macro_rules! activation {
    ($stat:ident, $kind:ident, $name:literal, $aliases:expr, $keys:expr, $defaults:expr, $torch:literal, $flops:expr, $summary:literal) => {
        pub const $stat: OpType = OpType {
            name: $name,
            aliases: $aliases,
            keys: $keys,
            arity: Arity::Exactly(1),
            fused_bn: None,
            defaults: $defaults,
            build: |a| build(a, Act::$kind, $name, $torch, $flops),
            summary: $summary,
        };
    };
}

/// The default every activation has: a module, not a function.
const FUNCTIONAL: &[(&str, AttrDefault)] = &[("functional", AttrDefault::Bool(false))];

// Per-element FLOPs, as documented in docs/COUNTING.md: a comparison, add, multiply, divide,
// exp, log, tanh or sqrt counts 1.
activation!(
    RELU,
    Relu,
    "relu",
    &[],
    &["functional"],
    FUNCTIONAL,
    "ReLU",
    1,
    "max(0, x)"
);
activation!(
    RELU6,
    Relu6,
    "relu6",
    &[],
    &["functional"],
    FUNCTIONAL,
    "ReLU6",
    2,
    "min(max(0, x), 6)"
);
activation!(
    LEAKY_RELU,
    LeakyRelu,
    "leaky_relu",
    &["leakyrelu"],
    &["slope", "functional"],
    &[
        ("slope", AttrDefault::Float(0.01)),
        ("functional", AttrDefault::Bool(false))
    ],
    "LeakyReLU",
    2,
    "x if x > 0 else slope·x (slope 0.01)"
);
activation!(
    PRELU,
    Prelu,
    "prelu",
    &[],
    &["per_channel", "functional"],
    &[
        ("per_channel", AttrDefault::Bool(false)),
        ("functional", AttrDefault::Bool(false))
    ],
    "PReLU",
    2,
    "leaky ReLU with a learned slope (one, or one per channel)"
);
activation!(
    ELU,
    Elu,
    "elu",
    &[],
    &["alpha", "functional"],
    &[
        ("alpha", AttrDefault::Float(1.0)),
        ("functional", AttrDefault::Bool(false))
    ],
    "ELU",
    4,
    "x if x > 0 else alpha·(exp(x) - 1)"
);
activation!(
    SELU,
    Selu,
    "selu",
    &[],
    &["functional"],
    FUNCTIONAL,
    "SELU",
    5,
    "scale·elu(x, 1.6733)"
);
activation!(
    CELU,
    Celu,
    "celu",
    &[],
    &["alpha", "functional"],
    &[
        ("alpha", AttrDefault::Float(1.0)),
        ("functional", AttrDefault::Bool(false))
    ],
    "CELU",
    5,
    "max(0, x) + min(0, alpha·(exp(x/alpha) - 1))"
);
activation!(
    GELU,
    Gelu,
    "gelu",
    &[],
    &["approximate", "functional"],
    &[
        ("approximate", AttrDefault::Word("none")),
        ("functional", AttrDefault::Bool(false))
    ],
    "GELU",
    8,
    "x·Φ(x) (approximate: none | tanh)"
);
activation!(
    SIGMOID,
    Sigmoid,
    "sigmoid",
    &[],
    &["functional"],
    FUNCTIONAL,
    "Sigmoid",
    4,
    "1 / (1 + exp(-x))"
);
activation!(
    HARDSIGMOID,
    Hardsigmoid,
    "hardsigmoid",
    &["hard_sigmoid"],
    &["functional"],
    FUNCTIONAL,
    "Hardsigmoid",
    4,
    "relu6(x + 3) / 6"
);
activation!(
    TANH,
    Tanh,
    "tanh",
    &[],
    &["functional"],
    FUNCTIONAL,
    "Tanh",
    1,
    "tanh(x)"
);
activation!(
    HARDTANH,
    Hardtanh,
    "hardtanh",
    &[],
    &["min", "max", "functional"],
    &[
        ("min", AttrDefault::Float(-1.0)),
        ("max", AttrDefault::Float(1.0)),
        ("functional", AttrDefault::Bool(false)),
    ],
    "Hardtanh",
    2,
    "clamp(x, min, max) (-1, 1)"
);
activation!(
    SILU,
    Silu,
    "silu",
    &["swish"],
    &["functional"],
    FUNCTIONAL,
    "SiLU",
    5,
    "x·sigmoid(x)"
);
activation!(
    HARDSWISH,
    Hardswish,
    "hardswish",
    &["hard_swish"],
    &["functional"],
    FUNCTIONAL,
    "Hardswish",
    5,
    "x·relu6(x + 3) / 6"
);
activation!(
    MISH,
    Mish,
    "mish",
    &[],
    &["functional"],
    FUNCTIONAL,
    "Mish",
    6,
    "x·tanh(softplus(x))"
);
activation!(
    SOFTPLUS,
    Softplus,
    "softplus",
    &[],
    &["beta", "threshold", "functional"],
    &[
        ("beta", AttrDefault::Float(1.0)),
        ("threshold", AttrDefault::Float(20.0)),
        ("functional", AttrDefault::Bool(false)),
    ],
    "Softplus",
    4,
    "log(1 + exp(beta·x)) / beta"
);
activation!(
    SOFTSIGN,
    Softsign,
    "softsign",
    &[],
    &["functional"],
    FUNCTIONAL,
    "Softsign",
    3,
    "x / (1 + |x|)"
);
activation!(
    SOFTMAX,
    Softmax,
    "softmax",
    &[],
    &["dim", "functional"],
    &[
        ("dim", AttrDefault::Int(1)),
        ("functional", AttrDefault::Bool(false))
    ],
    "Softmax",
    4,
    "exp(x - max) / sum over `dim` (default 1)"
);
activation!(
    LOG_SOFTMAX,
    LogSoftmax,
    "log_softmax",
    &["logsoftmax"],
    &["dim", "functional"],
    &[
        ("dim", AttrDefault::Int(1)),
        ("functional", AttrDefault::Bool(false))
    ],
    "LogSoftmax",
    5,
    "log of softmax over `dim` (default 1)"
);

/// Which activation: what the shared struct compares, instead of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Relu,
    Relu6,
    LeakyRelu,
    Prelu,
    Elu,
    Selu,
    Celu,
    Gelu,
    Sigmoid,
    Hardsigmoid,
    Tanh,
    Hardtanh,
    Silu,
    Hardswish,
    Mish,
    Softplus,
    Softsign,
    Softmax,
    LogSoftmax,
}

#[derive(Debug)]
struct Activation {
    kind: Act,
    name: &'static str,
    torch: &'static str,
    flops: u64,
    params: u64,
    /// For softmax: the reduced dimension.
    dim: Option<usize>,
    detail: String,
    /// The op's two parameters: slope / alpha / min / beta, and max / threshold.
    p: [f32; 2],
    /// Called as a function in the PyTorch model (`F.relu`), not as a module.
    functional: bool,
}

fn build(
    a: &mut Attrs,
    kind: Act,
    name: &'static str,
    torch: &'static str,
    flops: u64,
) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let mut params = 0;
    let mut dim = None;
    let mut detail = String::new();
    let mut p = [0.0f32; 2];
    let functional = a.bool("functional", false)?;
    match kind {
        Act::LeakyRelu => {
            let s = a.float("slope", 0.01)?;
            detail = format!(" {s}");
            p[0] = s as f32;
        }
        Act::Prelu => {
            params = if a.bool("per_channel", false)? {
                x.channels().ok_or_else(|| {
                    Diagnostic::new(format!(
                        "per-channel PReLU needs a channel dimension, got {x}"
                    ))
                })?
            } else {
                1
            };
        }
        Act::Elu | Act::Celu => {
            p[0] = a.float("alpha", 1.0)? as f32;
        }
        Act::Gelu => {
            let ap = a.choice("approximate", &["none", "tanh"], "none")?;
            if ap == "tanh" {
                detail = " (tanh)".into();
                p[0] = 1.0;
            }
        }
        Act::Hardtanh => {
            let lo = a.float("min", -1.0)?;
            let hi = a.float("max", 1.0)?;
            p = [lo as f32, hi as f32];
            if lo >= hi {
                return Err(a.error(
                    "max",
                    format!("hardtanh needs min < max, got {lo} and {hi}"),
                ));
            }
        }
        Act::Softplus => {
            p = [
                a.float("beta", 1.0)? as f32,
                a.float("threshold", 20.0)? as f32,
            ];
        }
        Act::Softmax | Act::LogSoftmax => {
            let d = a.dim("dim", 1, x.rank())?;
            if d == 0 {
                return Err(a
                    .error("dim", "softmax over the batch dimension mixes samples")
                    .help("use `dim: 1` (classes)"));
            }
            dim = Some(d);
        }
        _ => {}
    }
    Ok(Box::new(Activation {
        kind,
        name,
        torch,
        flops,
        params,
        dim,
        detail,
        p,
        functional,
    }))
}

impl Op for Activation {
    fn op(&self) -> &'static str {
        self.name
    }
    fn label(&self) -> String {
        format!("{}{}", self.name, self.detail)
    }
    fn category(&self) -> Category {
        Category::Activation
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn params(&self) -> Params {
        Params {
            trainable: self.params,
            ..Default::default()
        }
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        Ok(Cost {
            macs: 0,
            flops: per_element(&inputs[0], self.flops)?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        // A softmax over a spatial axis makes every output depend on the whole axis.
        match self.dim {
            Some(d) if d >= 2 => Geometry::Global,
            _ => Geometry::Pointwise,
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        (!self.functional).then_some(self.torch)
    }
}

impl Kernel for Activation {
    /// The ONNX operator of the same name where there is one; relu6 and hardtanh as `Clip`,
    /// SiLU as `Sigmoid`·x, GELU as `Gelu` from opset 20 and its Erf/Tanh formula before, Mish
    /// from opset 18 (`Softplus`, `Tanh`, `Mul` before), softplus with its beta.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::{float, int, string};
        let (x, out) = (e.input(0), e.output(0));
        let [p0, p1] = self.p;
        let one = |e: &mut super::onnx::Emit, op: &'static str, attrs| {
            e.node(op, &[&x], &[&out], attrs);
        };
        match self.kind {
            Act::Relu => one(e, "Relu", vec![]),
            Act::Sigmoid => one(e, "Sigmoid", vec![]),
            Act::Tanh => one(e, "Tanh", vec![]),
            Act::Selu => one(e, "Selu", vec![]),
            Act::Softsign => one(e, "Softsign", vec![]),
            Act::Hardswish => one(e, "HardSwish", vec![]),
            Act::LeakyRelu => one(e, "LeakyRelu", vec![float("alpha", p0)]),
            Act::Elu => one(e, "Elu", vec![float("alpha", p0)]),
            Act::Celu => one(e, "Celu", vec![float("alpha", p0)]),
            Act::Hardsigmoid => one(
                e,
                "HardSigmoid",
                vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
            ),
            Act::Softmax => one(
                e,
                "Softmax",
                vec![int("axis", self.dim.unwrap_or(1) as i64)],
            ),
            Act::LogSoftmax => one(
                e,
                "LogSoftmax",
                vec![int("axis", self.dim.unwrap_or(1) as i64)],
            ),
            Act::Mish if e.opset >= 18 => one(e, "Mish", vec![]),
            Act::Gelu if e.opset >= 20 => one(
                e,
                "Gelu",
                vec![string(
                    "approximate",
                    if p0 == 1.0 { "tanh" } else { "none" },
                )],
            ),
            Act::Relu6 | Act::Hardtanh => {
                let (lo, hi) = if self.kind == Act::Relu6 {
                    (0.0, 6.0)
                } else {
                    (p0, p1)
                };
                let lo = e.scalar("min", lo);
                let hi = e.scalar("max", hi);
                e.node("Clip", &[&x, &lo, &hi], &[&out], vec![]);
            }
            Act::Silu => {
                let s = e.step("Sigmoid", &[&x], vec![]);
                e.node("Mul", &[&x, &s], &[&out], vec![]);
            }
            Act::Mish => {
                let sp = e.step("Softplus", &[&x], vec![]);
                let t = e.step("Tanh", &[&sp], vec![]);
                e.node("Mul", &[&x, &t], &[&out], vec![]);
            }
            Act::Softplus => {
                // PyTorch returns x itself past the threshold; log(1 + exp(βx))/β differs from
                // it there by less than exp(−threshold).
                if p0 == 1.0 {
                    one(e, "Softplus", vec![]);
                } else {
                    let b = e.scalar("beta", p0);
                    let bx = e.step("Mul", &[&x, &b], vec![]);
                    let sp = e.step("Softplus", &[&bx], vec![]);
                    e.node("Div", &[&sp, &b], &[&out], vec![]);
                }
            }
            Act::Gelu => {
                let half = e.scalar("half", 0.5);
                let onef = e.scalar("one", 1.0);
                let inner = if p0 == 1.0 {
                    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                    let c = e.scalar("c", 0.044715);
                    let k = e.scalar("k", (2.0f64 / std::f64::consts::PI).sqrt() as f32);
                    let x2 = e.step("Mul", &[&x, &x], vec![]);
                    let x3 = e.step("Mul", &[&x2, &x], vec![]);
                    let cx3 = e.step("Mul", &[&x3, &c], vec![]);
                    let s = e.step("Add", &[&x, &cx3], vec![]);
                    let ks = e.step("Mul", &[&s, &k], vec![]);
                    e.step("Tanh", &[&ks], vec![])
                } else {
                    // 0.5·x·(1 + erf(x/√2))
                    let r = e.scalar("sqrt2", std::f32::consts::SQRT_2);
                    let d = e.step("Div", &[&x, &r], vec![]);
                    e.step("Erf", &[&d], vec![])
                };
                let p = e.step("Add", &[&inner, &onef], vec![]);
                let xp = e.step("Mul", &[&x, &p], vec![]);
                e.node("Mul", &[&xp, &half], &[&out], vec![]);
            }
            Act::Prelu => {
                let w = e.weight(0);
                let rank = e.in_shapes[0].rank();
                let slope = if self.params > 1 && rank > 2 {
                    let mut shape = vec![-1i64];
                    shape.extend(std::iter::repeat_n(1, rank - 2));
                    e.reshape(&w, &shape)
                } else {
                    w
                };
                e.node("PRelu", &[&x, &slope], &[&out], vec![]);
            }
        }
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // Element-wise, or a softmax over channels; a softmax over space is global.
        match self.dim {
            Some(d) if d >= 2 => Collapsed::Stop,
            _ => Collapsed::Identity,
        }
    }
    fn weights(&self) -> Vec<WeightSpec> {
        if self.kind == Act::Prelu {
            // PyTorch initialises PReLU slopes to 0.25.
            let n = self.params as usize;
            vec![WeightSpec {
                name: "weight",
                shape: vec![n],
                kind: WeightKind::Trainable,
                init: Init::Constant(0.25),
            }]
        } else {
            Vec::new()
        }
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        if let Some(f) = self.pointwise() {
            let mut out = x.clone();
            f.apply_all(&mut out.data);
            return Ok(vec![out]);
        }
        let out = match self.kind {
            Act::Prelu => {
                let w = &weights[0].data;
                let mut out = x.clone();
                let c = if w.len() > 1 { x.shape[1] } else { 1 };
                let plane: usize = x.shape.get(2..).map_or(1, |s| s.iter().product());
                for (i, v) in out.data.iter_mut().enumerate() {
                    let slope = w[(i / plane) % c];
                    if *v < 0.0 {
                        *v *= slope;
                    }
                }
                out
            }
            Act::Softmax | Act::LogSoftmax => {
                let d = self.dim.expect("set for softmax");
                let len = x.shape[d];
                let inner: usize = x.shape[d + 1..].iter().product();
                let mut out = x.clone();
                let log = self.kind == Act::LogSoftmax;
                use rayon::prelude::*;
                out.data.par_chunks_mut(len * inner).for_each(|block| {
                    crate::kernels::vectorised(
                        #[inline(always)]
                        || softmax_block(block, inner, log),
                    )
                });
                out
            }
            _ => {
                return Err(Diagnostic::new(format!(
                    "no kernel for activation {}",
                    self.name
                )))
            }
        };
        Ok(vec![out])
    }
    fn forward_inplace(&self, x: &mut Tensor, _weights: &[Tensor]) -> bool {
        match self.pointwise() {
            Some(f) => {
                f.apply_all(&mut x.data);
                true
            }
            None => false,
        }
    }
    fn pointwise(&self) -> Option<Pointwise> {
        use Pointwise::*;
        let [p0, p1] = self.p;
        Some(match self.kind {
            Act::Relu => Relu,
            Act::Relu6 => Relu6,
            Act::LeakyRelu => LeakyRelu(p0),
            Act::Elu => Elu(p0),
            Act::Selu => Selu,
            Act::Celu => Celu(p0),
            Act::Gelu if p0 == 1.0 => GeluTanh,
            Act::Gelu => Gelu,
            Act::Sigmoid => Sigmoid,
            Act::Hardsigmoid => Hardsigmoid,
            Act::Tanh => Tanh,
            Act::Hardtanh => Hardtanh(p0, p1),
            Act::Silu => Silu,
            Act::Hardswish => Hardswish,
            Act::Mish => Mish,
            Act::Softplus => Softplus(p0, p1),
            Act::Softsign => Softsign,
            _ => return None,
        })
    }
}

impl Counting for Activation {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        _outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let x = &inputs[0];
        match c {
            // ptflops counts numel once per module hook (ReLU, PReLU, ELU, LeakyReLU, ReLU6,
            // GELU) and once per call of a function it patches (F.relu, F.prelu, F.elu,
            // F.relu6, F.gelu, F.silu, F.softmax) — a module whose forward calls a patched
            // function (nn.ReLU → F.relu) is counted twice; nn.ReLU6 calls F.hardtanh and
            // nn.LeakyReLU F.leaky_relu, which are not patched.
            Convention::Ptflops => {
                let hooked = matches!(
                    self.kind,
                    Act::Relu | Act::Prelu | Act::Elu | Act::LeakyRelu | Act::Relu6 | Act::Gelu
                );
                let patched_call = if self.functional {
                    matches!(
                        self.kind,
                        Act::Relu
                            | Act::Prelu
                            | Act::Elu
                            | Act::Relu6
                            | Act::Gelu
                            | Act::Silu
                            | Act::Softmax
                    )
                } else {
                    matches!(
                        self.kind,
                        Act::Relu | Act::Prelu | Act::Elu | Act::Gelu | Act::Silu | Act::Softmax
                    )
                };
                let times = u64::from(hooked && !self.functional) + u64::from(patched_call);
                per_element(x, times)
            }
            // thop (modules only): PReLU numel in eval mode; Softmax rows · (3·features − 1).
            Convention::Thop if !self.functional => match self.kind {
                Act::Prelu => x.numel(),
                Act::Softmax => {
                    let f = x.0[self.dim.unwrap_or(1)];
                    mul(&[x.numel()? / f, 3 * f - 1])
                }
                _ => Ok(0),
            },
            // torchinfo: parameters × batch (PReLU's slopes).
            Convention::Torchinfo if !self.functional => mul(&[self.params, x.0[0]]),
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
        let forward = self.cost(inputs, outputs)?.flops;
        // Autograd saves the output of ReLU, sigmoid, tanh and (log-)softmax (their
        // derivative is a function of it) and the input of every other activation.
        let output = matches!(
            self.kind,
            Act::Relu | Act::Sigmoid | Act::Tanh | Act::Softmax | Act::LogSoftmax
        );
        Ok(Training {
            forward_flops: forward,
            backward_flops: if input_grad || self.params > 0 {
                forward
            } else {
                0
            },
            saved: Saved {
                inputs: if output { vec![] } else { vec![0] },
                output,
                extra_bytes: 0,
            },
            view: false,
            grad_views: vec![],
            cublas: false,
        })
    }
}

/// Softmax (or log-softmax) over the `len` rows of one `len`×`inner` block, in place: the
/// statistics of all `inner` columns are kept side by side, so every pass runs over contiguous
/// memory (a softmax over the last dim, `inner` = 1, runs along its row).
#[inline(always)]
fn softmax_block(block: &mut [f32], inner: usize, log: bool) {
    if inner == 1 {
        let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for v in block.iter_mut() {
            let e = (*v - max).exp();
            sum += e;
            if !log {
                *v = e;
            }
        }
        if log {
            let shift = max + sum.ln();
            block.iter_mut().for_each(|v| *v -= shift);
        } else {
            let inv = 1.0 / sum;
            block.iter_mut().for_each(|v| *v *= inv);
        }
        return;
    }
    let mut max = vec![f32::NEG_INFINITY; inner];
    for row in block.chunks(inner) {
        max.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
    }
    let mut sum = vec![0f32; inner];
    for row in block.chunks_mut(inner) {
        for ((v, s), &m) in row.iter_mut().zip(sum.iter_mut()).zip(&max) {
            let e = (*v - m).exp();
            *s += e;
            if !log {
                *v = e;
            }
        }
    }
    if log {
        let shift: Vec<f32> = max.iter().zip(&sum).map(|(m, s)| m + s.ln()).collect();
        for row in block.chunks_mut(inner) {
            row.iter_mut().zip(&shift).for_each(|(v, s)| *v -= s);
        }
    } else {
        let inv: Vec<f32> = sum.iter().map(|s| 1.0 / s).collect();
        for row in block.chunks_mut(inner) {
            row.iter_mut().zip(&inv).for_each(|(v, i)| *v *= i);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;
    use crate::layers::Shape;

    /// Measured on 2×8×10×10 (ptflops at batch 1: 800 elements, so doubled here).
    #[test]
    fn conventions_measured() {
        use super::Convention::*;
        let x = Shape(vec![2, 8, 10, 10]);
        let cases: &[(&str, &str, [u64; 4])] = &[
            ("relu", "{}", [0, 2 * 1600, 0, 0]),
            ("relu", "{functional: true}", [0, 2 * 800, 0, 0]),
            ("relu6", "{}", [0, 2 * 800, 0, 0]),
            ("leaky_relu", "{}", [0, 2 * 800, 0, 0]),
            ("prelu", "{}", [0, 2 * 1600, 1600, 2]),
            ("elu", "{}", [0, 2 * 1600, 0, 0]),
            ("gelu", "{}", [0, 2 * 1600, 0, 0]),
            ("silu", "{}", [0, 2 * 800, 0, 0]),
            ("sigmoid", "{}", [0, 0, 0, 0]),
            ("hardswish", "{}", [0, 0, 0, 0]),
            ("selu", "{}", [0, 0, 0, 0]),
            ("softmax", "{}", [0, 2 * 800, 4600, 0]),
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
    fn prelu_and_costs() {
        let (l, _) = build("prelu", "{per_channel: true}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(l.params().trainable, 64);
        let (l, _) = build("prelu", "{}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(l.params().trainable, 1);
        let (l, o) = build("relu", "{}", &[&[2, 3, 4, 5]]).unwrap();
        assert_eq!(l.cost(&[Shape(vec![2, 3, 4, 5])], &o).unwrap().flops, 120);
        for (op, attrs, message) in [
            (
                "softmax",
                "{dim: 0}",
                "softmax over the batch dimension mixes samples",
            ),
            (
                "softmax",
                "{dim: 5}",
                "`dim: 5` is out of range for a rank-2 tensor",
            ),
            (
                "hardtanh",
                "{min: 1, max: 0}",
                "hardtanh needs min < max, got 1 and 0",
            ),
        ] {
            let e = build(op, attrs, &[&[2, 10]]).unwrap_err();
            assert_eq!(e.message, message, "{op} {attrs}");
        }
        assert!(build("gelu", "{approximate: tanhh}", &[&[2, 10]])
            .unwrap_err()
            .help
            .unwrap()
            .contains("tanh"));
    }
}
