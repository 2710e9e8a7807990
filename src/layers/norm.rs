//! Normalisation: batch norm (1-D and 2-D), layer norm, group norm, instance norm and local
//! response norm, with PyTorch's affine / running-statistics options and defaults.

use super::Convention;
use super::{
    add, mul, per_element, Arity, AttrDefault, Attrs, Category, Collapsed, Cost, Counting, Kernel,
    Layer, NormInfo, Op, OpType, Params, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};
use rayon::prelude::*;

const BN_KEYS: &[&str] = &["eps", "momentum", "affine", "track_running_stats"];
const BN_DEFAULTS: &[(&str, AttrDefault)] = &[
    ("eps", AttrDefault::Float(1e-5)),
    ("momentum", AttrDefault::Float(0.1)),
    ("affine", AttrDefault::Bool(true)),
    ("track_running_stats", AttrDefault::Bool(true)),
];
/// Instance norms: affine and running statistics off.
const IN_DEFAULTS: &[(&str, AttrDefault)] = &[
    ("eps", AttrDefault::Float(1e-5)),
    ("momentum", AttrDefault::Float(0.1)),
    ("affine", AttrDefault::Bool(false)),
    ("track_running_stats", AttrDefault::Bool(false)),
];

pub const BATCHNORM2D: OpType = OpType {
    name: "batchnorm2d",
    aliases: &["bn", "batchnorm"],
    keys: BN_KEYS,
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: BN_DEFAULTS,
    build: build_bn2d,
    summary: "batch normalisation over N×C×H×W (torch.nn.BatchNorm2d)",
};

pub const BATCHNORM1D: OpType = OpType {
    name: "batchnorm1d",
    aliases: &["bn1d"],
    keys: BN_KEYS,
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: BN_DEFAULTS,
    build: build_bn1d,
    summary: "batch normalisation over N×C or N×C×L (torch.nn.BatchNorm1d)",
};

pub const BATCHNORM3D: OpType = OpType {
    name: "batchnorm3d",
    aliases: &[],
    keys: BN_KEYS,
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: BN_DEFAULTS,
    build: build_bn3d,
    summary: "batch normalisation over N×C×D×H×W (torch.nn.BatchNorm3d)",
};

pub const INSTANCENORM1D: OpType = OpType {
    name: "instancenorm1d",
    aliases: &[],
    keys: &["eps", "momentum", "affine", "track_running_stats"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: IN_DEFAULTS,
    build: build_in1d,
    summary: "instance normalisation over N×C×L (torch.nn.InstanceNorm1d; affine and running stats off by default)",
};

pub const INSTANCENORM3D: OpType = OpType {
    name: "instancenorm3d",
    aliases: &[],
    keys: &["eps", "momentum", "affine", "track_running_stats"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: IN_DEFAULTS,
    build: build_in3d,
    summary: "instance normalisation over N×C×D×H×W (torch.nn.InstanceNorm3d; affine and running stats off by default)",
};

pub const LAYERNORM: OpType = OpType {
    name: "layernorm",
    aliases: &["layer_norm", "ln"],
    keys: &["dims", "eps", "affine", "bias"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("dims", AttrDefault::Int(1)),
        ("eps", AttrDefault::Float(1e-5)),
        ("affine", AttrDefault::Bool(true)),
        ("bias", AttrDefault::Bool(true)),
    ],
    build: build_ln,
    summary: "layer normalisation over the last `dims` dimensions (torch.nn.LayerNorm)",
};

pub const LAYERNORM2D: OpType = OpType {
    name: "layernorm2d",
    aliases: &["layer_norm2d"],
    keys: &["eps", "affine", "bias"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("eps", AttrDefault::Float(1e-5)),
        ("affine", AttrDefault::Bool(true)),
        ("bias", AttrDefault::Bool(true)),
    ],
    build: build_ln2d,
    summary: "layer normalisation over the channels of N×C×H×W, per position (torchvision LayerNorm2d: ConvNeXt)",
};

pub const GROUPNORM: OpType = OpType {
    name: "groupnorm",
    aliases: &["group_norm", "gn"],
    keys: &["groups", "eps", "affine"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("eps", AttrDefault::Float(1e-5)),
        ("affine", AttrDefault::Bool(true)),
    ],
    build: build_gn,
    summary: "group normalisation (torch.nn.GroupNorm)",
};

pub const INSTANCENORM2D: OpType = OpType {
    name: "instancenorm2d",
    aliases: &["instance_norm", "in2d"],
    keys: &["eps", "momentum", "affine", "track_running_stats"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: IN_DEFAULTS,
    build: build_in,
    summary:
        "instance normalisation (torch.nn.InstanceNorm2d; affine and running stats off by default)",
};

pub const LOCAL_RESPONSE_NORM: OpType = OpType {
    name: "local_response_norm",
    aliases: &["lrn"],
    keys: &["size", "alpha", "beta", "k"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("alpha", AttrDefault::Float(1e-4)),
        ("beta", AttrDefault::Float(0.75)),
        ("k", AttrDefault::Float(1.0)),
    ],
    build: build_lrn,
    summary: "local response normalisation across channels (torch.nn.LocalResponseNorm)",
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Batch2d,
    Batch1d,
    Batch3d,
    Layer {
        dims: usize,
    },
    /// Over the channels (dim 1) of N×C×…, per position (torchvision's LayerNorm2d).
    Layer2d,
    Group {
        groups: u64,
    },
    /// Over `rank` spatial axes (1, 2 or 3).
    Instance {
        rank: usize,
    },
    Lrn {
        size: u64,
    },
}

#[derive(Debug)]
struct Norm {
    kind: Kind,
    /// Size of the affine parameters (channels, or the normalised shape for layer norm).
    features: u64,
    weight: bool,
    bias: bool,
    running: bool,
    /// Layer norm: the normalised trailing shape.
    normalized: Vec<usize>,
    eps: f32,
    /// Local response norm: alpha, beta, k.
    lrn: [f32; 3],
}

fn channels(a: &Attrs, min_rank: usize, max_rank: usize, what: &str) -> Result<u64, Diagnostic> {
    let x = a.input();
    if x.rank() < min_rank || x.rank() > max_rank {
        return Err(
            Diagnostic::new(format!("{} needs {what}, got {x}", a.op))
                .help(match (min_rank, max_rank) {
                (4, 4) => "for a flat N×C input use `batchnorm1d`",
                (5, 5) | (3, 3) => match x.rank() {
                    4 => "for an image N×C×H×W use the 2-D layer (`batchnorm2d`, `instancenorm2d`)",
                    5 => {
                        "for a volume N×C×D×H×W use the 3-D layer (`batchnorm3d`, `instancenorm3d`)"
                    }
                    3 => "for a sequence N×C×L use the 1-D layer (`batchnorm1d`, `instancenorm1d`)",
                    _ => "for a flat N×C input use `batchnorm1d`",
                },
                _ => "for an image N×C×H×W use `batchnorm2d`",
            }),
        );
    }
    Ok(x.0[1])
}

/// Which batch norm: BatchNorm1d (N×C or N×C×L), 2d (N×C×H×W) or 3d (N×C×D×H×W).
#[derive(Clone, Copy)]
enum BnDims {
    One,
    Two,
    Three,
}

fn build_bn(a: &mut Attrs, dims: BnDims) -> Result<Box<dyn Layer>, Diagnostic> {
    let c = match dims {
        BnDims::Two => channels(a, 4, 4, "an N×C×H×W input")?,
        BnDims::One => channels(a, 2, 3, "an N×C or N×C×L input")?,
        BnDims::Three => channels(a, 5, 5, "an N×C×D×H×W input")?,
    };
    let eps = a.float("eps", 1e-5)? as f32;
    a.float("momentum", 0.1)?;
    let affine = a.bool("affine", true)?;
    let running = a.bool("track_running_stats", true)?;
    let kind = match dims {
        BnDims::Two => Kind::Batch2d,
        BnDims::One => Kind::Batch1d,
        BnDims::Three => Kind::Batch3d,
    };
    Ok(Box::new(Norm {
        normalized: Vec::new(),
        kind,
        features: c,
        weight: affine,
        bias: affine,
        running,
        eps,
        lrn: [0.0; 3],
    }))
}
fn build_bn2d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_bn(a, BnDims::Two)
}
fn build_bn3d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_bn(a, BnDims::Three)
}
fn build_bn1d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_bn(a, BnDims::One)
}

fn build_ln(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let dims = a.positive("dims")?.unwrap_or(1) as usize;
    if dims >= x.rank() {
        return Err(a.error(
            "dims",
            format!("layernorm over the last {dims} dimensions of a rank-{} input would include the batch", x.rank()),
        ).help(format!("use at most {}", x.rank() - 1)));
    }
    let eps = a.float("eps", 1e-5)? as f32;
    let affine = a.bool("affine", true)?;
    let bias = a.bool("bias", true)?;
    let features = mul(&x.0[x.rank() - dims..])?;
    Ok(Box::new(Norm {
        normalized: x.0[x.rank() - dims..].iter().map(|&d| d as usize).collect(),
        kind: Kind::Layer { dims },
        features,
        weight: affine,
        bias: affine && bias,
        running: false,
        eps,
        lrn: [0.0; 3],
    }))
}

fn build_ln2d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let c = channels(a, 4, 4, "an N×C×H×W input")?;
    let eps = a.float("eps", 1e-5)? as f32;
    let affine = a.bool("affine", true)?;
    let bias = a.bool("bias", true)?;
    Ok(Box::new(Norm {
        normalized: vec![c as usize],
        kind: Kind::Layer2d,
        features: c,
        weight: affine,
        bias: affine && bias,
        running: false,
        eps,
        lrn: [0.0; 3],
    }))
}

fn build_gn(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let c = channels(a, 2, 5, "an N×C×… input")?;
    let groups = a.req_positive("groups", "32")?;
    if c % groups != 0 {
        return Err(a
            .error("groups", format!("groups = {groups} must divide the {c} channels"))
            .help("choose a divisor of the channel count (32 is the usual choice for multiples of 32)"));
    }
    let eps = a.float("eps", 1e-5)? as f32;
    let affine = a.bool("affine", true)?;
    Ok(Box::new(Norm {
        normalized: Vec::new(),
        kind: Kind::Group { groups },
        features: c,
        weight: affine,
        bias: affine,
        running: false,
        eps,
        lrn: [0.0; 3],
    }))
}

fn build_in(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_instance(a, 2)
}
fn build_in1d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_instance(a, 1)
}
fn build_in3d(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    build_instance(a, 3)
}

fn build_instance(a: &mut Attrs, rank: usize) -> Result<Box<dyn Layer>, Diagnostic> {
    let what = match rank {
        1 => "an N×C×L input",
        2 => "an N×C×H×W input",
        _ => "an N×C×D×H×W input",
    };
    let c = channels(a, rank + 2, rank + 2, what)?;
    let eps = a.float("eps", 1e-5)? as f32;
    a.float("momentum", 0.1)?;
    let affine = a.bool("affine", false)?;
    let running = a.bool("track_running_stats", false)?;
    Ok(Box::new(Norm {
        normalized: Vec::new(),
        kind: Kind::Instance { rank },
        features: c,
        weight: affine,
        bias: affine,
        running,
        eps,
        lrn: [0.0; 3],
    }))
}

fn build_lrn(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let c = channels(a, 3, 5, "an N×C×… input")?;
    let size = a.req_positive("size", "5")?;
    let lrn = [
        a.float("alpha", 1e-4)? as f32,
        a.float("beta", 0.75)? as f32,
        a.float("k", 1.0)? as f32,
    ];
    let eps = 0.0;
    Ok(Box::new(Norm {
        normalized: Vec::new(),
        kind: Kind::Lrn { size },
        features: c,
        weight: false,
        bias: false,
        running: false,
        eps,
        lrn,
    }))
}

impl Op for Norm {
    fn op(&self) -> &'static str {
        match self.kind {
            Kind::Batch2d => "batchnorm2d",
            Kind::Batch1d => "batchnorm1d",
            Kind::Layer { .. } => "layernorm",
            Kind::Layer2d => "layernorm2d",
            Kind::Group { .. } => "groupnorm",
            Kind::Batch3d => "batchnorm3d",
            Kind::Instance { rank: 1 } => "instancenorm1d",
            Kind::Instance { rank: 3 } => "instancenorm3d",
            Kind::Instance { .. } => "instancenorm2d",
            Kind::Lrn { .. } => "local_response_norm",
        }
    }
    fn label(&self) -> String {
        match self.kind {
            Kind::Batch2d | Kind::Batch1d | Kind::Batch3d => format!("batchnorm {}", self.features),
            Kind::Layer { dims } => format!("layernorm last {dims}"),
            Kind::Layer2d => format!("layernorm2d {}", self.features),
            Kind::Group { groups } => format!("groupnorm {groups} groups"),
            Kind::Instance { .. } => "instancenorm".into(),
            Kind::Lrn { size } => format!("lrn size {size}"),
        }
    }
    fn category(&self) -> Category {
        Category::Normalization
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn params(&self) -> Params {
        let trainable = self.features * (u64::from(self.weight) + u64::from(self.bias));
        let buffers = if self.running { 2 * self.features } else { 0 };
        Params {
            trainable,
            frozen: 0,
            buffers,
        }
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let x = &inputs[0];
        // Inference batch norm folds into one scale and shift (2 per element). Norms that compute
        // statistics on the fly: mean (1), variance (3: subtract, square, add), normalise (2:
        // subtract, multiply by the reciprocal std) = 6 per element, plus 2 for an affine. LRN:
        // a sum of `size` squares (2·size), then scale, power and divide (3).
        let per = match self.kind {
            Kind::Batch2d | Kind::Batch1d | Kind::Batch3d => 2,
            Kind::Lrn { size } => 2 * size + 3,
            _ => 6 + 2 * u64::from(self.weight),
        };
        Ok(Cost {
            macs: 0,
            flops: per_element(x, per)?,
        })
    }
    fn norm(&self) -> Option<NormInfo> {
        match self.kind {
            Kind::Batch2d | Kind::Batch1d | Kind::Batch3d => Some(NormInfo {
                removes_channel_mean: true,
                running_stats: self.running,
            }),
            Kind::Instance { .. } => Some(NormInfo {
                removes_channel_mean: true,
                running_stats: false,
            }),
            Kind::Layer { .. } | Kind::Layer2d | Kind::Group { .. } => Some(NormInfo {
                removes_channel_mean: false,
                running_stats: false,
            }),
            Kind::Lrn { .. } => None,
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(match self.kind {
            Kind::Batch2d => "BatchNorm2d",
            Kind::Batch1d => "BatchNorm1d",
            Kind::Layer { .. } => "LayerNorm",
            Kind::Layer2d => "LayerNorm2d",
            Kind::Group { .. } => "GroupNorm",
            Kind::Batch3d => "BatchNorm3d",
            Kind::Instance { rank: 1 } => "InstanceNorm1d",
            Kind::Instance { rank: 3 } => "InstanceNorm3d",
            Kind::Instance { .. } => "InstanceNorm2d",
            Kind::Lrn { .. } => "LocalResponseNorm",
        })
    }
}

impl Kernel for Norm {
    /// Running statistics: `BatchNormalization`; layer norm: `LayerNormalization`; instance
    /// norm: `InstanceNormalization`; LRN (odd sizes): `LRN`; batch statistics, channel layer
    /// norm and group norm written out (`ReduceMean`, `Sub`, `Mul`, `Sqrt`, `Div`).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::{channel_affine, float, int, standardize};
        let (x, out) = (e.input(0), e.output(0));
        let rank = e.in_shapes[0].rank();
        let mut k = 0;
        let mut next = |on: bool, e: &super::onnx::Emit| {
            on.then(|| {
                k += 1;
                e.weight(k - 1)
            })
        };
        let gamma = next(self.weight, e);
        let beta = next(self.bias, e);
        let stats = if self.running {
            Some((
                next(true, e).expect("listed"),
                next(true, e).expect("listed"),
            ))
        } else {
            None
        };
        let c = self.features as usize;
        let ones = |e: &mut super::onnx::Emit, v: Option<String>, fill: f32, n: usize| {
            v.unwrap_or_else(|| e.floats("fill", &[n as i64], vec![fill; n]))
        };
        match self.kind {
            Kind::Lrn { size } => {
                if size % 2 == 0 {
                    return Err(e.unsupported(&format!(
                        "local response norm of even size {size} (ONNX's LRN centres an even window one channel later than PyTorch)"
                    )));
                }
                let [alpha, beta_, bias] = self.lrn;
                e.node(
                    "LRN",
                    &[&x],
                    &[&out],
                    vec![
                        int("size", size as i64),
                        float("alpha", alpha),
                        float("beta", beta_),
                        float("bias", bias),
                    ],
                );
            }
            _ if stats.is_some() => {
                let (mean, var) = stats.expect("checked");
                let g = ones(e, gamma, 1.0, c);
                let b = ones(e, beta, 0.0, c);
                e.node(
                    "BatchNormalization",
                    &[&x, &g, &b, &mean, &var],
                    &[&out],
                    vec![float("epsilon", self.eps)],
                );
            }
            Kind::Layer { dims } => {
                let n: usize = self.normalized.iter().product();
                let g = match gamma {
                    Some(g) => g,
                    None => {
                        let d: Vec<i64> = self.normalized.iter().map(|&d| d as i64).collect();
                        e.floats("ones", &d, vec![1.0; n])
                    }
                };
                let mut ins = vec![x.as_str(), g.as_str()];
                if let Some(b) = &beta {
                    ins.push(b);
                }
                e.node(
                    "LayerNormalization",
                    &ins,
                    &[&out],
                    vec![int("axis", -(dims as i64)), float("epsilon", self.eps)],
                );
            }
            Kind::Instance { .. } => {
                let g = ones(e, gamma, 1.0, c);
                let b = ones(e, beta, 0.0, c);
                e.node(
                    "InstanceNormalization",
                    &[&x, &g, &b],
                    &[&out],
                    vec![float("epsilon", self.eps)],
                );
            }
            Kind::Layer2d => {
                let y = standardize(e, &x, &[1], self.eps);
                channel_affine(e, &y, rank, gamma, beta, &out);
            }
            Kind::Batch1d | Kind::Batch2d | Kind::Batch3d => {
                let mut axes = vec![0i64];
                axes.extend(2..rank as i64);
                let y = standardize(e, &x, &axes, self.eps);
                channel_affine(e, &y, rank, gamma, beta, &out);
            }
            Kind::Group { groups } => {
                let n = e.in_dims(0)[0];
                let grouped = e.reshape(&x, &[n, groups as i64, -1]);
                let y = standardize(e, &grouped, &[2], self.eps);
                let back = e.in_dims(0);
                let y = e.reshape(&y, &back);
                channel_affine(e, &y, rank, gamma, beta, &out);
            }
        }
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // A per-position affine map once its statistics are taken as constants (as the
        // analysis and the Google library count fields; LRN mixes channels only).
        Collapsed::Identity
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let shape = match self.kind {
            Kind::Layer { .. } => self.normalized.clone(),
            _ => vec![self.features as usize],
        };
        let mut w = Vec::new();
        if self.weight {
            w.push(WeightSpec {
                name: "weight",
                shape: shape.clone(),
                kind: WeightKind::Trainable,
                init: Init::Ones,
            });
        }
        if self.bias {
            w.push(WeightSpec {
                name: "bias",
                shape: shape.clone(),
                kind: WeightKind::Trainable,
                init: Init::Zeros,
            });
        }
        if self.running {
            w.push(WeightSpec {
                name: "running_mean",
                shape: shape.clone(),
                kind: WeightKind::Buffer,
                init: Init::Zeros,
            });
            w.push(WeightSpec {
                name: "running_var",
                shape,
                kind: WeightKind::Buffer,
                init: Init::Ones,
            });
        }
        w
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let mut out = x.clone();
        let mut wi = weights.iter();
        let gamma = if self.weight {
            wi.next().map(|t| &t.data[..])
        } else {
            None
        };
        let beta = if self.bias {
            wi.next().map(|t| &t.data[..])
        } else {
            None
        };
        let stats = if self.running {
            Some((
                &wi.next().expect("listed").data,
                &wi.next().expect("listed").data,
            ))
        } else {
            None
        };
        let n = x.shape[0];
        let eps = self.eps;
        match self.kind {
            Kind::Lrn { size } => {
                // PyTorch: x / (k + alpha/size · Σ x² over a channel window)^beta, the window
                // padded with size/2 channels before and (size−1)/2 after.
                let c = x.shape[1];
                let plane: usize = x.shape[2..].iter().product();
                let [alpha, beta_, k] = self.lrn;
                let (before, after) = (size as usize / 2, (size as usize - 1) / 2);
                for b in 0..n {
                    for ch in 0..c {
                        let lo = ch.saturating_sub(before);
                        let hi = (ch + after).min(c - 1);
                        for p in 0..plane {
                            let sq: f32 = (lo..=hi)
                                .map(|j| x.data[(b * c + j) * plane + p].powi(2))
                                .sum();
                            let i = (b * c + ch) * plane + p;
                            out.data[i] = x.data[i] / (k + alpha * sq / size as f32).powf(beta_);
                        }
                    }
                }
            }
            Kind::Layer { dims } => {
                let group: usize = x.shape[x.shape.len() - dims..].iter().product();
                out.data.par_chunks_mut(group).for_each(|row| {
                    crate::kernels::vectorised(
                        #[inline(always)]
                        || layer_norm_row(row, eps, gamma, beta),
                    )
                });
            }
            Kind::Layer2d => {
                let (c, plane) = (x.shape[1], x.shape[2..].iter().product::<usize>());
                out.data.par_chunks_mut(c * plane).for_each(|sample| {
                    crate::kernels::vectorised(
                        #[inline(always)]
                        || layer_norm_channels(sample, c, plane, eps, gamma, beta),
                    )
                });
            }
            _ => {
                // Batch, group and instance norm: statistics per (group of) channel(s).
                let c = x.shape[1];
                let plane: usize = x.shape[2..].iter().product();
                let groups = match self.kind {
                    Kind::Group { groups } => groups as usize,
                    _ => c,
                };
                let per = c / groups;
                if let Some((mean, var)) = stats {
                    // Inference with running statistics.
                    out.data
                        .par_chunks_mut(plane)
                        .enumerate()
                        .for_each(|(bc, row)| {
                            let ch = bc % c;
                            let inv = 1.0 / (var[ch] + eps).sqrt();
                            for v in row.iter_mut() {
                                *v = (*v - mean[ch]) * inv;
                            }
                        });
                } else if matches!(self.kind, Kind::Batch2d | Kind::Batch1d | Kind::Batch3d) {
                    // Batch statistics over N and the spatial positions, per channel.
                    for ch in 0..c {
                        let vals: Vec<f32> = (0..n)
                            .flat_map(|b| {
                                x.data[(b * c + ch) * plane..(b * c + ch + 1) * plane]
                                    .iter()
                                    .copied()
                            })
                            .collect();
                        let mut tmp = vals.clone();
                        normalize(&mut tmp, eps);
                        let mut it = tmp.into_iter();
                        for b in 0..n {
                            for v in &mut out.data[(b * c + ch) * plane..(b * c + ch + 1) * plane] {
                                *v = it.next().expect("same length");
                            }
                        }
                    }
                } else {
                    out.data
                        .par_chunks_mut(per * plane)
                        .for_each(|g| normalize(g, eps));
                }
                if gamma.is_some() || beta.is_some() {
                    out.data
                        .par_chunks_mut(plane)
                        .enumerate()
                        .for_each(|(bc, row)| {
                            let ch = bc % c;
                            let (g, b) =
                                (gamma.map_or(1.0, |g| g[ch]), beta.map_or(0.0, |b| b[ch]));
                            row.iter_mut().for_each(|v| *v = *v * g + b);
                        });
                }
            }
        }
        Ok(vec![out])
    }
    fn channel_affine(&self, weights: &[Tensor]) -> Option<(Vec<f32>, Vec<f32>)> {
        // Inference batch norm with running statistics: y = x·a + b per channel.
        if !matches!(self.kind, Kind::Batch2d | Kind::Batch1d | Kind::Batch3d) || !self.running {
            return None;
        }
        let mut it = weights.iter();
        let gamma = if self.weight {
            Some(&it.next()?.data)
        } else {
            None
        };
        let beta = if self.bias {
            Some(&it.next()?.data)
        } else {
            None
        };
        let (mean, var) = (&it.next()?.data, &it.next()?.data);
        let c = mean.len();
        let a: Vec<f32> = (0..c)
            .map(|i| gamma.map_or(1.0, |g| g[i]) / (var[i] + self.eps).sqrt())
            .collect();
        let b: Vec<f32> = (0..c)
            .map(|i| beta.map_or(0.0, |b| b[i]) - mean[i] * a[i])
            .collect();
        Some((a, b))
    }
}

impl Counting for Norm {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        _outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let x = &inputs[0];
        let n = x.numel()?;
        let affine = self.weight;
        let batch = matches!(self.kind, Kind::Batch2d | Kind::Batch1d | Kind::Batch3d);
        let twice_if = |b: bool| if b { 2 } else { 1 };
        match (c, self.kind) {
            (Convention::Torchvision, _) => Ok(0),
            // Local response norm: no module rule in any tool. ptflops sees the functional ops
            // F.local_response_norm is made of: x.mul(x), avg_pool over the channel-padded
            // squares (N·(C + size − 1)·rest elements), .mul(alpha), .add(k).
            (Convention::Ptflops, Kind::Lrn { size }) => {
                let rest = n / (x.0[0] * x.0[1]);
                add(&[mul(&[3, n])?, mul(&[x.0[0], x.0[1] + size - 1, rest])?])
            }
            (_, Kind::Lrn { .. }) => Ok(0),
            // fvcore: inference batch norm (running statistics) 2 per element with an affine,
            // else 1; batch statistics (and the other norms) 5 with an affine, else 4.
            (Convention::Fvcore, _) if batch && self.running => mul(&[n, twice_if(affine)]),
            (Convention::Fvcore, _) => mul(&[n, if affine { 5 } else { 4 }]),
            // ptflops: numel, doubled when the module has `affine` — LayerNorm's attribute is
            // `elementwise_affine`, so layer norm is never doubled.
            (Convention::Ptflops, Kind::Layer { .. }) => Ok(n),
            // torchvision's LayerNorm2d subclasses nn.LayerNorm: ptflops and thop look modules
            // up by exact type and know no LayerNorm2d, and its forward calls F.layer_norm,
            // which neither patches (measured: scripts/tensor_ops_reference.py).
            (Convention::Ptflops | Convention::Thop, Kind::Layer2d) => Ok(0),
            (Convention::Ptflops, _) => mul(&[n, twice_if(affine)]),
            // thop: 2 per element, doubled with an affine; no rule for GroupNorm.
            (Convention::Thop, Kind::Group { .. }) => Ok(0),
            (Convention::Thop, _) => mul(&[n, 2, twice_if(affine)]),
            // torchinfo: parameters × batch.
            (Convention::Torchinfo, _) => mul(&[self.params().trainable, x.0[0]]),
        }
    }
    fn training(
        &self,
        inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        let x = &inputs[0];
        let n = x.numel()?;
        // Training computes statistics: batch norm costs what the other norms cost (mean 1,
        // variance 3, normalise 2, affine 2). Backward: twice the forward (the input gradient
        // needs two reductions and a combination; the affine gradient two more sums).
        let per = match self.kind {
            Kind::Lrn { size } => 2 * size + 3,
            _ => 6 + 2 * u64::from(self.weight),
        };
        let forward = per_element(x, per)?;
        // Saved: the input, and per normalised group a mean and an inverse standard deviation
        // in float32 (batch/instance norm: per channel / per sample and channel; group norm:
        // per sample and group; layer norm: per normalised row). LRN (a composite op) also keeps
        // its output and its denominator tensor.
        let groups = match self.kind {
            Kind::Batch2d | Kind::Batch1d | Kind::Batch3d => x.0[1],
            Kind::Instance { .. } => x.0[0] * x.0[1],
            Kind::Group { groups } => x.0[0] * groups,
            Kind::Layer { .. } | Kind::Layer2d => n / self.features.max(1),
            Kind::Lrn { .. } => 0,
        };
        let (output, extra) = match self.kind {
            Kind::Lrn { .. } => (true, mul(&[n, dtype_bytes])?),
            _ => (false, mul(&[2, groups, 4])?),
        };
        Ok(Training {
            forward_flops: forward,
            backward_flops: mul(&[2, forward])?,
            saved: Saved {
                inputs: vec![0],
                output,
                extra_bytes: extra,
            },
            view: false,
            grad_views: vec![],
            cublas: false,
        })
    }
}

/// Layer norm of one row in place: mean and biased variance in 16 f32 lanes (vectorised),
/// then the affine.
#[inline(always)]
fn layer_norm_row(row: &mut [f32], eps: f32, gamma: Option<&[f32]>, beta: Option<&[f32]>) {
    let n = row.len() as f32;
    let lanes = |f: &dyn Fn(f32) -> f32| -> f32 {
        let mut acc = [0f32; 16];
        let mut chunks = row.chunks_exact(16);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        acc.iter().sum::<f32>() + tail
    };
    let mean = lanes(&|v| v) / n;
    let var = lanes(&|v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    match (gamma, beta) {
        (Some(g), Some(b)) => row
            .iter_mut()
            .zip(g.iter().zip(b))
            .for_each(|(v, (g, b))| *v = (*v - mean) * inv * g + b),
        (Some(g), None) => row
            .iter_mut()
            .zip(g)
            .for_each(|(v, g)| *v = (*v - mean) * inv * g),
        _ => row.iter_mut().for_each(|v| *v = (*v - mean) * inv),
    }
}

/// Layer norm over the `c` channels of one C×plane sample, per position: statistics summed
/// channel by channel over contiguous planes (vectorised along the plane).
#[inline(always)]
fn layer_norm_channels(
    x: &mut [f32],
    c: usize,
    plane: usize,
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) {
    let mut mean = vec![0f32; plane];
    for ch in x.chunks(plane) {
        mean.iter_mut().zip(ch).for_each(|(m, &v)| *m += v);
    }
    let inv_c = 1.0 / c as f32;
    mean.iter_mut().for_each(|m| *m *= inv_c);
    let mut var = vec![0f32; plane];
    for ch in x.chunks(plane) {
        var.iter_mut()
            .zip(ch.iter().zip(&mean))
            .for_each(|(s, (&v, &m))| *s += (v - m) * (v - m));
    }
    var.iter_mut()
        .for_each(|s| *s = 1.0 / (*s * inv_c + eps).sqrt());
    for (k, ch) in x.chunks_mut(plane).enumerate() {
        let (g, b) = (gamma.map_or(1.0, |g| g[k]), beta.map_or(0.0, |b| b[k]));
        ch.iter_mut()
            .zip(mean.iter().zip(&var))
            .for_each(|(v, (&m, &inv))| *v = (*v - m) * inv * g + b);
    }
}

/// Normalises `v` in place to zero mean and unit variance (biased, as PyTorch), in f64.
fn normalize(v: &mut [f32], eps: f32) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    for x in v.iter_mut() {
        *x = ((*x as f64 - mean) * inv) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::Convention;
    use crate::layers::testutil::build;
    use crate::layers::Shape;

    /// Figures measured with fvcore 0.1.5, ptflops 0.7.5 (batch 1, so doubled here), thop
    /// 0.1.1 and torchinfo 1.8 on a 2×8×10×10 input (1600 elements).
    #[test]
    fn conventions_measured() {
        let x = Shape(vec![2, 8, 10, 10]);
        let cases: &[(&str, &str, [u64; 4])] = &[
            ("bn", "{}", [3200, 2 * 1600, 6400, 32]),
            ("bn", "{affine: false}", [1600, 2 * 800, 3200, 0]),
            ("gn", "{groups: 2}", [8000, 2 * 1600, 0, 32]),
            ("ln", "{dims: 3}", [8000, 2 * 800, 6400, 3200]),
            ("instancenorm2d", "{}", [6400, 2 * 800, 3200, 0]),
            (
                "instancenorm2d",
                "{affine: true}",
                [8000, 2 * 1600, 6400, 32],
            ),
            ("lrn", "{size: 5}", [0, 2 * 3600, 0, 0]),
        ];
        for (op, attrs, want) in cases {
            let (l, y) = build(op, attrs, &[&x.0]).unwrap();
            let got: Vec<u64> = [
                Convention::Fvcore,
                Convention::Ptflops,
                Convention::Thop,
                Convention::Torchinfo,
            ]
            .iter()
            .map(|&c| l.convention_cost(c, std::slice::from_ref(&x), &y).unwrap())
            .collect();
            assert_eq!(got, want.to_vec(), "{op} {attrs}");
        }
    }

    #[test]
    fn parameters_and_buffers() {
        let (l, _) = build("bn", "{}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!((l.params().trainable, l.params().buffers), (128, 128));
        let (l, _) = build(
            "bn",
            "{affine: false, track_running_stats: false}",
            &[&[1, 64, 8, 8]],
        )
        .unwrap();
        assert_eq!((l.params().trainable, l.params().buffers), (0, 0));
        let (l, _) = build("batchnorm1d", "{}", &[&[1, 100]]).unwrap();
        assert_eq!(l.params().trainable, 200);
        // InstanceNorm2d defaults: no affine, no running stats.
        let (l, _) = build("instancenorm2d", "{}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(l.params(), Default::default());
        let (l, _) = build("layernorm", "{dims: 3}", &[&[1, 4, 5, 6]]).unwrap();
        assert_eq!(l.params().trainable, 2 * 120);
        let (l, _) = build("layernorm", "{bias: false}", &[&[1, 7, 16]]).unwrap();
        assert_eq!(l.params().trainable, 16);
        let (l, _) = build("groupnorm", "{groups: 8}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(l.params().trainable, 128);
        let e = build("groupnorm", "{groups: 7}", &[&[1, 64, 8, 8]]).unwrap_err();
        assert_eq!(e.message, "groups = 7 must divide the 64 channels");
        assert!(build("bn", "{}", &[&[1, 64]])
            .unwrap_err()
            .help
            .unwrap()
            .contains("batchnorm1d"));
    }
}
