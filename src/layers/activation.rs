//! Activation functions. One struct serves them all; what differs (options, PyTorch module,
//! per-element FLOPs) is in the table of registrations below. PReLU is the one with parameters.

use super::{per_element, Arity, Attrs, Category, Cost, Geometry, Layer, OpType, Params, Shape};
use crate::error::Diagnostic;

macro_rules! activation {
    ($stat:ident, $name:literal, $aliases:expr, $keys:expr, $torch:literal, $flops:expr, $summary:literal) => {
        pub const $stat: OpType = OpType {
            name: $name,
            aliases: $aliases,
            keys: $keys,
            arity: Arity::Exactly(1),
            fuses_bn: false,
            build: |a| build(a, $name, $torch, $flops),
            summary: $summary,
        };
    };
}

// Per-element FLOPs, as documented in docs/COUNTING.md: a comparison, add, multiply, divide,
// exp, log, tanh or sqrt counts 1.
activation!(RELU, "relu", &[], &[], "ReLU", 1, "max(0, x)");
activation!(RELU6, "relu6", &[], &[], "ReLU6", 2, "min(max(0, x), 6)");
activation!(
    LEAKY_RELU,
    "leaky_relu",
    &["leakyrelu"],
    &["slope"],
    "LeakyReLU",
    2,
    "x if x > 0 else slope·x (slope 0.01)"
);
activation!(
    PRELU,
    "prelu",
    &[],
    &["per_channel"],
    "PReLU",
    2,
    "leaky ReLU with a learned slope (one, or one per channel)"
);
activation!(
    ELU,
    "elu",
    &[],
    &["alpha"],
    "ELU",
    4,
    "x if x > 0 else alpha·(exp(x) - 1)"
);
activation!(SELU, "selu", &[], &[], "SELU", 5, "scale·elu(x, 1.6733)");
activation!(
    CELU,
    "celu",
    &[],
    &["alpha"],
    "CELU",
    5,
    "max(0, x) + min(0, alpha·(exp(x/alpha) - 1))"
);
activation!(
    GELU,
    "gelu",
    &[],
    &["approximate"],
    "GELU",
    8,
    "x·Φ(x) (approximate: none | tanh)"
);
activation!(
    SIGMOID,
    "sigmoid",
    &[],
    &[],
    "Sigmoid",
    4,
    "1 / (1 + exp(-x))"
);
activation!(
    HARDSIGMOID,
    "hardsigmoid",
    &["hard_sigmoid"],
    &[],
    "Hardsigmoid",
    4,
    "relu6(x + 3) / 6"
);
activation!(TANH, "tanh", &[], &[], "Tanh", 1, "tanh(x)");
activation!(
    HARDTANH,
    "hardtanh",
    &[],
    &["min", "max"],
    "Hardtanh",
    2,
    "clamp(x, min, max) (-1, 1)"
);
activation!(SILU, "silu", &["swish"], &[], "SiLU", 5, "x·sigmoid(x)");
activation!(
    HARDSWISH,
    "hardswish",
    &["hard_swish"],
    &[],
    "Hardswish",
    5,
    "x·relu6(x + 3) / 6"
);
activation!(MISH, "mish", &[], &[], "Mish", 6, "x·tanh(softplus(x))");
activation!(
    SOFTPLUS,
    "softplus",
    &[],
    &["beta", "threshold"],
    "Softplus",
    4,
    "log(1 + exp(beta·x)) / beta"
);
activation!(
    SOFTSIGN,
    "softsign",
    &[],
    &[],
    "Softsign",
    3,
    "x / (1 + |x|)"
);
activation!(
    SOFTMAX,
    "softmax",
    &[],
    &["dim"],
    "Softmax",
    4,
    "exp(x - max) / sum over `dim` (default 1)"
);
activation!(
    LOG_SOFTMAX,
    "log_softmax",
    &["logsoftmax"],
    &["dim"],
    "LogSoftmax",
    5,
    "log of softmax over `dim` (default 1)"
);

#[derive(Debug)]
struct Activation {
    name: &'static str,
    torch: &'static str,
    flops: u64,
    params: u64,
    /// For softmax: the reduced dimension.
    dim: Option<usize>,
    detail: String,
}

fn build(
    a: &mut Attrs,
    name: &'static str,
    torch: &'static str,
    flops: u64,
) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let mut params = 0;
    let mut dim = None;
    let mut detail = String::new();
    match name {
        "leaky_relu" => {
            let s = a.float("slope", 0.01)?;
            detail = format!(" {s}");
        }
        "prelu" => {
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
        "elu" | "celu" => {
            a.float("alpha", 1.0)?;
        }
        "gelu" => {
            let ap = a.choice("approximate", &["none", "tanh"], "none")?;
            if ap == "tanh" {
                detail = " (tanh)".into();
            }
        }
        "hardtanh" => {
            let lo = a.float("min", -1.0)?;
            let hi = a.float("max", 1.0)?;
            if lo >= hi {
                return Err(a.error(
                    "max",
                    format!("hardtanh needs min < max, got {lo} and {hi}"),
                ));
            }
        }
        "softplus" => {
            a.float("beta", 1.0)?;
            a.float("threshold", 20.0)?;
        }
        "softmax" | "log_softmax" => {
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
        name,
        torch,
        flops,
        params,
        dim,
        detail,
    }))
}

impl Layer for Activation {
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
        Some(self.torch)
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::Shape;
    use crate::testutil::build;

    #[test]
    fn prelu_and_costs() {
        let (l, _) = build("prelu", "{per_channel: true}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(l.params().trainable, 64);
        let (l, _) = build("prelu", "{}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(l.params().trainable, 1);
        let (l, o) = build("relu", "{}", &[&[2, 3, 4, 5]]).unwrap();
        assert_eq!(l.cost(&[Shape(vec![2, 3, 4, 5])], &o).unwrap().flops, 120);
        assert!(build("softmax", "{dim: 0}", &[&[2, 10]]).is_err());
        assert!(build("softmax", "{dim: 5}", &[&[2, 10]]).is_err());
        assert!(build("hardtanh", "{min: 1, max: 0}", &[&[2, 10]]).is_err());
        assert!(build("gelu", "{approximate: tanhh}", &[&[2, 10]])
            .unwrap_err()
            .help
            .unwrap()
            .contains("tanh"));
    }
}
