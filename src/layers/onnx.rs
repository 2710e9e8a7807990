//! What a layer writes into an ONNX graph: the small, protobuf-free description each layer type
//! emits from [`super::Kernel::onnx`] — nodes (op type, inputs, outputs, attributes) and the
//! constant tensors they need (axes, shapes, scalars) — through an [`Emit`], which names the
//! layer's input, output and weight tensors and hands out fresh names for intermediate ones.
//! `onnx::export` walks the network in topological order, gives each layer an `Emit`, and turns
//! what it collected into a ModelProto. The layer decides the ONNX form of its own computation
//! (per-op facts live with the op); nothing here knows an op.

use super::Shape;
use crate::error::Diagnostic;

/// The lowest and highest ONNX opsets `archscope export` writes (`--opset`). Below 17 there is
/// no LayerNormalization; a layer whose best form needs a later opset (GELU at 20) writes its
/// decomposition below that.
pub const MIN_OPSET: u32 = 17;
/// See [`MIN_OPSET`].
pub const MAX_OPSET: u32 = 21;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    Str(String),
}

/// One ONNX node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op_type: &'static str,
    /// Unique in the graph: the layer path for a layer's first node, `path/OpType_k` after.
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, AttrValue)>,
}

/// The values of a constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor a layer's nodes read (an initializer that is not a weight).
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: ConstData,
}

/// The tensors of one layer, and what it has emitted so far.
#[derive(Debug)]
pub struct Emit<'a> {
    /// The opset being written.
    pub opset: u32,
    /// The layer path (names its nodes and intermediate tensors).
    pub layer: &'a str,
    /// The names of its input tensors, in input order.
    pub inputs: &'a [String],
    pub in_shapes: &'a [Shape],
    /// The names its outputs must have, in output order.
    pub outputs: &'a [String],
    pub out_shapes: &'a [Shape],
    /// The names of its weight tensors, in the order of [`super::Kernel::weights`] (a tied
    /// weight appended last).
    pub weights: &'a [String],
    pub nodes: Vec<Node>,
    pub consts: Vec<Const>,
    count: usize,
}

impl<'a> Emit<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opset: u32,
        layer: &'a str,
        inputs: &'a [String],
        in_shapes: &'a [Shape],
        outputs: &'a [String],
        out_shapes: &'a [Shape],
        weights: &'a [String],
    ) -> Emit<'a> {
        Emit {
            opset,
            layer,
            inputs,
            in_shapes,
            outputs,
            out_shapes,
            weights,
            nodes: Vec::new(),
            consts: Vec::new(),
            count: 0,
        }
    }

    /// Input `k`'s tensor name.
    pub fn input(&self, k: usize) -> String {
        self.inputs[k].clone()
    }
    /// Output `k`'s tensor name.
    pub fn output(&self, k: usize) -> String {
        self.outputs[k].clone()
    }
    /// Weight `k`'s tensor name.
    pub fn weight(&self, k: usize) -> String {
        self.weights[k].clone()
    }
    /// Input `k`'s dimensions, batch first.
    pub fn in_dims(&self, k: usize) -> Vec<i64> {
        dims(&self.in_shapes[k])
    }
    /// Output `k`'s dimensions, batch first.
    pub fn out_dims(&self, k: usize) -> Vec<i64> {
        dims(&self.out_shapes[k])
    }

    /// A fresh intermediate tensor name under the layer's path.
    pub fn tmp(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}/{what}_{}", self.layer, self.count)
    }

    /// Appends a node; returns its first output's name.
    pub fn node(
        &mut self,
        op_type: &'static str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&'static str, AttrValue)>,
    ) -> String {
        let name = if self.nodes.is_empty() {
            self.layer.to_string()
        } else {
            format!("{}/{op_type}_{}", self.layer, self.nodes.len())
        };
        self.nodes.push(Node {
            op_type,
            name,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs,
        });
        outputs.first().map_or_else(String::new, |s| s.to_string())
    }

    /// A node with one fresh output (named after `what`); returns that name.
    pub fn step(
        &mut self,
        op_type: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, AttrValue)>,
    ) -> String {
        let out = self.tmp(op_type);
        self.node(op_type, inputs, &[&out], attrs)
    }

    /// A constant int64 tensor of one dimension (axes, shapes, starts…); returns its name.
    pub fn ints(&mut self, what: &str, values: &[i64]) -> String {
        let name = self.tmp(what);
        self.consts.push(Const {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data: ConstData::I64(values.to_vec()),
        });
        name
    }

    /// A constant f32 tensor of these dimensions; returns its name.
    pub fn floats(&mut self, what: &str, dims: &[i64], values: Vec<f32>) -> String {
        let name = self.tmp(what);
        self.consts.push(Const {
            name: name.clone(),
            dims: dims.to_vec(),
            data: ConstData::F32(values),
        });
        name
    }

    /// A constant f32 scalar (rank 0); returns its name.
    pub fn scalar(&mut self, what: &str, value: f32) -> String {
        self.floats(what, &[], vec![value])
    }

    /// `x` reshaped to `shape` (a Reshape node with a constant shape); returns the new name.
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints("shape", shape);
        self.step("Reshape", &[x, &s], vec![])
    }

    /// The error for a layer (or a setting of it) that has no ONNX form here.
    pub fn unsupported(&self, what: &str) -> Diagnostic {
        Diagnostic::new(format!("{what} has no ONNX export in archscope"))
            .layer(self.layer)
            .help("replace the layer by one that exports (docs/ONNX_EXPORT.md lists them), or export the model without it")
    }
}

/// A shape as ONNX dimensions.
pub fn dims(s: &Shape) -> Vec<i64> {
    s.0.iter().map(|&d| d as i64).collect()
}

/// An integer attribute.
pub fn int(name: &'static str, v: i64) -> (&'static str, AttrValue) {
    (name, AttrValue::Int(v))
}
/// An integer-list attribute.
pub fn ints(name: &'static str, v: &[i64]) -> (&'static str, AttrValue) {
    (name, AttrValue::Ints(v.to_vec()))
}
/// A float attribute.
pub fn float(name: &'static str, v: f32) -> (&'static str, AttrValue) {
    (name, AttrValue::Float(v))
}
/// A string attribute.
pub fn string(name: &'static str, v: &str) -> (&'static str, AttrValue) {
    (name, AttrValue::Str(v.to_string()))
}

/// A convolution or transposed convolution at any spatial rank, as its layer holds it.
pub struct ConvForm<'w> {
    pub transposed: bool,
    pub kernel: &'w [u64],
    pub stride: &'w [u64],
    pub pad_begin: &'w [u64],
    pub pad_end: &'w [u64],
    pub dilation: &'w [u64],
    pub output_padding: &'w [u64],
    pub groups: u64,
    pub bias: bool,
    pub padding_mode: crate::kernels_nd::PadMode,
}

fn i64s(v: &[u64]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// Writes a convolution: a `Pad` node first for reflect/replicate/circular padding (ONNX's
/// `reflect`, `edge`, `wrap`; `wrap` needs opset 19), then `Conv` or `ConvTranspose` with the
/// layer's weight (and bias).
pub fn conv(e: &mut Emit, f: &ConvForm) -> Result<(), Diagnostic> {
    use crate::kernels_nd::PadMode;
    let mut x = e.input(0);
    let mut pads: Vec<i64> = i64s(f.pad_begin);
    pads.extend(i64s(f.pad_end));
    if f.padding_mode != PadMode::Zeros && pads.iter().any(|&p| p != 0) {
        let mode = match f.padding_mode {
            PadMode::Reflect => "reflect",
            PadMode::Replicate => "edge",
            PadMode::Circular if e.opset >= 19 => "wrap",
            PadMode::Circular => {
                return Err(
                    e.unsupported("circular padding below opset 19 (ONNX's Pad mode `wrap`)")
                )
            }
            PadMode::Zeros => "constant",
        };
        let r = f.kernel.len();
        let mut all = vec![0i64; 2];
        all.extend(i64s(f.pad_begin));
        all.extend([0, 0]);
        all.extend(i64s(f.pad_end));
        let p = e.ints("pads", &all);
        x = e.step("Pad", &[&x, &p], vec![string("mode", mode)]);
        pads = vec![0; 2 * r];
    }
    let mut inputs = vec![x, e.weight(0)];
    if f.bias {
        inputs.push(e.weight(1));
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let mut attrs = vec![
        ints("kernel_shape", &i64s(f.kernel)),
        ints("strides", &i64s(f.stride)),
        ints("pads", &pads),
        ints("dilations", &i64s(f.dilation)),
        int("group", f.groups as i64),
    ];
    if f.transposed && f.output_padding.iter().any(|&p| p != 0) {
        attrs.push(ints("output_padding", &i64s(f.output_padding)));
    }
    let out = e.output(0);
    e.node(
        if f.transposed {
            "ConvTranspose"
        } else {
            "Conv"
        },
        &refs,
        &[&out],
        attrs,
    );
    Ok(())
}

/// `ReduceMean` over `axes` keeping them (axes as an input from opset 18, an attribute
/// before).
pub fn reduce_mean(e: &mut Emit, x: &str, axes: &[i64]) -> String {
    reduce(e, "ReduceMean", x, axes, true)
}

/// A reduction (`ReduceMean`, `ReduceSum`, `ReduceMax`…) over `axes`.
pub fn reduce(e: &mut Emit, op: &'static str, x: &str, axes: &[i64], keep: bool) -> String {
    let keep = int("keepdims", i64::from(keep));
    // ReduceSum took its axes as an input from opset 13, the others from 18.
    if e.opset >= 18 || op == "ReduceSum" {
        let a = e.ints("axes", axes);
        e.step(op, &[x, &a], vec![keep])
    } else {
        e.step(op, &[x], vec![ints("axes", axes), keep])
    }
}

/// `(x − mean) / √(var + eps)` with mean and (biased) variance over `axes`, written out.
pub fn standardize(e: &mut Emit, x: &str, axes: &[i64], eps: f32) -> String {
    let mean = reduce_mean(e, x, axes);
    let d = e.step("Sub", &[x, &mean], vec![]);
    let sq = e.step("Mul", &[&d, &d], vec![]);
    let var = reduce_mean(e, &sq, axes);
    let eps = e.scalar("eps", eps);
    let v = e.step("Add", &[&var, &eps], vec![]);
    let s = e.step("Sqrt", &[&v], vec![]);
    e.step("Div", &[&d, &s], vec![])
}

/// `x·gamma + beta` per channel (dimension 1) of a rank-`rank` tensor, the last step named
/// `out`; either may be absent (then `x` is copied by `Identity`).
pub fn channel_affine(
    e: &mut Emit,
    x: &str,
    rank: usize,
    gamma: Option<String>,
    beta: Option<String>,
    out: &str,
) {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
    let mut y = x.to_string();
    let steps = usize::from(gamma.is_some()) + usize::from(beta.is_some());
    let mut done = 0;
    for (w, op) in [(gamma, "Mul"), (beta, "Add")] {
        let Some(w) = w else { continue };
        let w = e.reshape(&w, &shape);
        done += 1;
        y = if done == steps {
            e.node(op, &[&y, &w], &[out], vec![])
        } else {
            e.step(op, &[&y, &w], vec![])
        };
    }
    if steps == 0 {
        e.node("Identity", &[&y], &[out], vec![]);
    }
}

/// A max or average pool at any spatial rank, as its layer holds it.
pub struct PoolForm<'w> {
    pub max: bool,
    pub kernel: &'w [u64],
    pub stride: &'w [u64],
    /// Padding on both sides of each axis.
    pub pad: &'w [u64],
    pub dilation: &'w [u64],
    pub ceil: bool,
    pub count_include_pad: bool,
    pub divisor_override: Option<u64>,
}

/// Writes `MaxPool` or `AveragePool` (a `divisor_override` as a `Mul` by area/divisor after an
/// average that counts the padding).
pub fn pool(e: &mut Emit, f: &PoolForm) -> Result<(), Diagnostic> {
    let (x, out) = (e.input(0), e.output(0));
    let mut pads = i64s(f.pad);
    pads.extend(i64s(f.pad));
    let mut attrs = vec![
        ints("kernel_shape", &i64s(f.kernel)),
        ints("strides", &i64s(f.stride)),
        ints("pads", &pads),
        int("ceil_mode", i64::from(f.ceil)),
    ];
    if f.max {
        attrs.push(ints("dilations", &i64s(f.dilation)));
        e.node("MaxPool", &[&x], &[&out], attrs);
        return Ok(());
    }
    let include = f.count_include_pad || f.divisor_override.is_some();
    attrs.push(int("count_include_pad", i64::from(include)));
    match f.divisor_override {
        None => {
            e.node("AveragePool", &[&x], &[&out], attrs);
        }
        Some(d) => {
            if f.ceil {
                return Err(
                    e.unsupported("average pooling with both `divisor_override` and `ceil`")
                );
            }
            let area: u64 = f.kernel.iter().product();
            let y = e.step("AveragePool", &[&x], attrs);
            let s = e.scalar("scale", area as f32 / d as f32);
            e.node("Mul", &[&y, &s], &[&out], vec![]);
        }
    }
    Ok(())
}

/// Adaptive pooling of the trailing spatial axes to `size`: `GlobalAveragePool` /
/// `GlobalMaxPool` to 1 everywhere; a plain pool when every axis's windows have one length and
/// one stride (an input divisible by the output); otherwise, for averages, one `MatMul` per
/// axis by its window-averaging matrix (exact: the same sums, in another order). Max pooling
/// over uneven windows has no ONNX form here.
pub fn adaptive(e: &mut Emit, max: bool, size: &[u64]) -> Result<(), Diagnostic> {
    let (x, out) = (e.input(0), e.output(0));
    let rank = e.in_shapes[0].rank();
    let r = size.len();
    let input: Vec<u64> = e.in_shapes[0].0[rank - r..].to_vec();
    if size.iter().all(|&s| s == 1) {
        let op = if max {
            "GlobalMaxPool"
        } else {
            "GlobalAveragePool"
        };
        e.node(op, &[&x], &[&out], vec![]);
        return Ok(());
    }
    // Per axis: Some((kernel, stride)) when the windows are uniform.
    let uniform: Vec<Option<(u64, u64)>> = size
        .iter()
        .zip(&input)
        .map(|(&o, &i)| {
            let w: Vec<(u64, u64)> = (0..o)
                .map(|k| crate::geometry::adaptive_window(k, o, i))
                .collect();
            let k = w[0].1 - w[0].0;
            let s = if o > 1 { w[1].0 - w[0].0 } else { 1 };
            w.iter()
                .enumerate()
                .all(|(j, &(a, b))| b - a == k && a == j as u64 * s)
                .then_some((k, s.max(1)))
        })
        .collect();
    if uniform.iter().all(Option::is_some) {
        let (k, s): (Vec<u64>, Vec<u64>) = uniform.into_iter().map(|u| u.expect("all")).unzip();
        let zeros = vec![0; r];
        let ones = vec![1; r];
        return pool(
            e,
            &PoolForm {
                max,
                kernel: &k,
                stride: &s,
                pad: &zeros,
                dilation: &ones,
                ceil: false,
                count_include_pad: true,
                divisor_override: None,
            },
        );
    }
    if max {
        return Err(e.unsupported(&format!(
            "adaptive max pooling of {} to {} (windows of different lengths)",
            join(&input),
            join(size)
        )));
    }
    let mut y = x;
    for a in 0..r {
        let (o, i) = (size[a], input[a]);
        if o == i {
            continue;
        }
        // M (i × o): column k averages window k.
        let mut m = vec![0f32; (i * o) as usize];
        for k in 0..o {
            let (s, t) = crate::geometry::adaptive_window(k, o, i);
            for p in s..t {
                m[(p * o + k) as usize] = 1.0 / (t - s) as f32;
            }
        }
        let mat = e.floats("window", &[i as i64, o as i64], m);
        let axis = rank - r + a;
        let mut perm: Vec<i64> = (0..rank as i64).collect();
        perm.swap(axis, rank - 1);
        let t = if axis == rank - 1 {
            y
        } else {
            e.step("Transpose", &[&y], vec![ints("perm", &perm)])
        };
        let p = e.step("MatMul", &[&t, &mat], vec![]);
        y = if axis == rank - 1 {
            p
        } else {
            e.step("Transpose", &[&p], vec![ints("perm", &perm)])
        };
    }
    e.node("Identity", &[&y], &[&out], vec![]);
    Ok(())
}

fn join(v: &[u64]) -> String {
    v.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// A `Slice` of `x` along `axes` (constant starts, ends, steps) into `out`.
pub fn slice(
    e: &mut Emit,
    x: &str,
    axes: &[i64],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
    out: &str,
) {
    let s = e.ints("starts", starts);
    let t = e.ints("ends", ends);
    let a = e.ints("axes", axes);
    let p = e.ints("steps", steps);
    e.node("Slice", &[x, &s, &t, &a, &p], &[out], vec![]);
}

/// `x` reshaped to output `k`'s shape, written as that output.
pub fn reshape_to_output(e: &mut Emit, x: &str, k: usize) {
    let shape = e.out_dims(k);
    let s = e.ints("shape", &shape);
    let out = e.output(k);
    e.node("Reshape", &[x, &s], &[&out], vec![]);
}

/// `softmax(q·kᵀ·scale + mask)·v` over the last two axes of q (…×L×E), k (…×S×E) and v
/// (…×S×Ev): `Transpose`, `MatMul`, `Mul`, `Add` of the mask (and, when causal, of a constant
/// L×S matrix with −∞ above the diagonal: PyTorch's top-left aligned `is_causal`), `Softmax`,
/// `MatMul`, written as `out`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    e: &mut Emit,
    q: &str,
    k: &str,
    v: &str,
    rank: usize,
    (l, s): (u64, u64),
    mask: Option<&str>,
    causal: bool,
    scale: f32,
    out: &str,
) {
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 2, rank - 1);
    let kt = e.step("Transpose", &[k], vec![ints("perm", &perm)]);
    let scores = e.step("MatMul", &[q, &kt], vec![]);
    let sc = e.scalar("scale", scale);
    let mut x = e.step("Mul", &[&scores, &sc], vec![]);
    if let Some(m) = mask {
        x = e.step("Add", &[&x, m], vec![]);
    }
    if causal {
        let mut m = vec![0f32; (l * s) as usize];
        for i in 0..l {
            for j in i + 1..s {
                m[(i * s + j) as usize] = f32::NEG_INFINITY;
            }
        }
        let c = e.floats("causal", &[l as i64, s as i64], m);
        x = e.step("Add", &[&x, &c], vec![]);
    }
    let p = e.step("Softmax", &[&x], vec![int("axis", -1)]);
    e.node("MatMul", &[&p, v], &[out], vec![]);
}
