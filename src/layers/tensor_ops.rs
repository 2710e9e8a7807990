//! Tensor ops with PyTorch's semantics, on tensors of any rank, batch first: `reshape`/`view`,
//! `permute`, `transpose`, `unsqueeze`, `squeeze`, `unflatten`, `roll`, `pad` (F.pad on any
//! axis but the batch, four modes), `mean`/`sum` over dims, `select` (x[:, i]) and `expand`
//! (a learned tensor to the batch). Dims are PyTorch's (dim 0 is the batch, negative dims count
//! from the end); the batch always stays dim 0, and a shape written in YAML leaves it out.
//! None does arithmetic: their cost is 0 MACs and 0 FLOPs, except `mean`/`sum` (one add per
//! input element, and one divide per output element for a mean: docs/COUNTING.md). Views
//! (reshape, squeeze, unsqueeze, unflatten, select, expand) own no memory in the analysis;
//! `permute`/`transpose` are charged the copy PyTorch makes when the permuted tensor is next
//! made contiguous (by a `reshape`), and `roll`/`pad` make a new tensor. Their kernels are
//! here: one strided gather (`gather`) that permutes, rolls, pads, slices and selects.

use rayon::prelude::*;

use super::{
    add, attrs_int, per_element, Arity, AttrDefault, Attrs, Category, Collapsed, Cost, Counting,
    Geometry, Kernel, Layer, Layout, Op, OpType, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::Tensor;
use crate::yaml::{YValue, YamlPath};

pub const RESHAPE: OpType = OpType {
    name: "reshape",
    aliases: &["view"],
    keys: &["shape"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_reshape,
    summary: "reshape each sample to `shape` (the batch left out; one size may be -1) (torch.reshape / Tensor.view)",
};

pub const PERMUTE: OpType = OpType {
    name: "permute",
    aliases: &[],
    keys: &["dims", "functional"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("functional", AttrDefault::Bool(true)),
    ],
    build: build_permute,
    summary: "reorder the dimensions as `dims` (batch first: dims[0] = 0) (Tensor.permute; `functional: false`: torchvision's Permute module, ConvNeXt)",
};

pub const TRANSPOSE: OpType = OpType {
    name: "transpose",
    aliases: &[],
    keys: &["dims", "functional"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("functional", AttrDefault::Bool(true)),
    ],
    build: build_transpose,
    summary: "swap two dimensions `dims: [a, b]`, neither the batch (Tensor.transpose; `functional: false`: torchvision MaxViT's SwapAxes module)",
};

pub const UNSQUEEZE: OpType = OpType {
    name: "unsqueeze",
    aliases: &[],
    keys: &["dim"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_unsqueeze,
    summary: "insert a dimension of size 1 at `dim` (Tensor.unsqueeze)",
};

pub const SQUEEZE: OpType = OpType {
    name: "squeeze",
    aliases: &[],
    keys: &["dim"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_squeeze,
    summary: "remove dimension `dim`, which must have size 1 (Tensor.squeeze(dim))",
};

pub const UNFLATTEN: OpType = OpType {
    name: "unflatten",
    aliases: &[],
    keys: &["dim", "sizes"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_unflatten,
    summary: "split dimension `dim` into `sizes` (one may be -1) (torch.nn.Unflatten)",
};

pub const ROLL: OpType = OpType {
    name: "roll",
    aliases: &[],
    keys: &["shifts", "dims"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_roll,
    summary: "circular shift by `shifts` along `dims` (torch.roll; Swin's shifted windows)",
};

pub const PAD: OpType = OpType {
    name: "pad",
    aliases: &[],
    keys: &["pad", "mode", "value"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("mode", AttrDefault::Word("constant")),
        ("value", AttrDefault::Float(0.0)),
    ],
    build: build_pad,
    summary: "pad the last dims by `pad` (F.pad order: last dim first, [before, after] pairs), `mode` constant|reflect|replicate|circular (F.pad)",
};

pub const MEAN: OpType = OpType {
    name: "mean",
    aliases: &[],
    keys: &["dims", "keepdim"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("keepdim", AttrDefault::Bool(false))],
    build: |a| build_reduce(a, true),
    summary: "mean over `dims` (never the batch), `keepdim` (Tensor.mean)",
};

pub const SUM: OpType = OpType {
    name: "sum",
    aliases: &[],
    keys: &["dims", "keepdim"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("keepdim", AttrDefault::Bool(false))],
    build: |a| build_reduce(a, false),
    summary: "sum over `dims` (never the batch), `keepdim` (Tensor.sum)",
};

pub const SELECT: OpType = OpType {
    name: "select",
    aliases: &[],
    keys: &["dim", "index"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_select,
    summary: "index `index` of dimension `dim`, which is removed (x[:, 0]: ViT's class token) (Tensor.select)",
};

pub const EXPAND: OpType = OpType {
    name: "expand",
    aliases: &[],
    keys: &["shape"],
    arity: Arity::AtLeast(1),
    fused_bn: None,
    defaults: &[],
    build: build_expand,
    summary: "broadcast size-1 dims to `shape` (batch left out; -1 keeps); `in: [t, x]` takes the batch from x (Tensor.expand)",
};

/// A list of integers of either sign, each with its location.
fn signed_list(
    a: &mut Attrs,
    key: &str,
    example: &str,
) -> Result<(Vec<i64>, Vec<YamlPath>, YamlPath), Diagnostic> {
    let Some(v) = a.raw(key)? else {
        return Err(Diagnostic::new(format!("{} needs `{key}`", a.op))
            .at(&a.node_path)
            .help(format!("add `{key}: {example}`")));
    };
    match &v.value {
        YValue::Seq(items) => {
            let vals = items
                .iter()
                .map(|x| attrs_int(x, key))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((vals, items.iter().map(|x| x.path.clone()).collect(), v.path))
        }
        _ => Err(
            Diagnostic::new(format!("`{key}` takes a list, e.g. `{key}: {example}`")).at(&v.path),
        ),
    }
}

/// Resolves dim `d` (negative from the end) of a rank-`rank` tensor; dim 0, the batch, is
/// refused with `why`.
fn resolve_dim(
    d: i64,
    rank: usize,
    at: &YamlPath,
    key: &str,
    op: &str,
) -> Result<usize, Diagnostic> {
    let r = rank as i64;
    let idx = if d < 0 { d + r } else { d };
    if idx < 0 || idx >= r {
        return Err(Diagnostic::new(format!(
            "`{key}` {d} is out of range for a rank-{rank} tensor (dims 0..{} or -{rank}..-1)",
            rank - 1
        ))
        .at(at));
    }
    if idx == 0 {
        return Err(Diagnostic::new(format!(
            "{op} over dim {d}, the batch: the batch stays dim 0 and is never reshaped, moved or reduced"
        ))
        .at(at)
        .help("count dims as PyTorch does, batch included: on N×C×H×W, channels are dim 1 (or -3)"));
    }
    Ok(idx as usize)
}

/// Sizes with at most one -1, filled in so that they multiply to `total`.
fn infer_sizes(
    op: &str,
    vals: &[i64],
    paths: &[YamlPath],
    list: &YamlPath,
    total: u64,
    what: &str,
) -> Result<Vec<u64>, Diagnostic> {
    let mut unknown = None;
    let mut known = 1u64;
    for (i, &v) in vals.iter().enumerate() {
        if v == -1 {
            if unknown.is_some() {
                return Err(Diagnostic::new(format!("{op}: only one size may be -1"))
                    .at(&paths[i])
                    .help("write the other sizes out"));
            }
            unknown = Some(i);
        } else if v <= 0 {
            return Err(Diagnostic::new(format!(
                "{op}: size {v} is not a size (write positive sizes, or -1 for one to be inferred)"
            ))
            .at(&paths[i]));
        } else {
            known = known
                .checked_mul(v as u64)
                .ok_or_else(|| Diagnostic::new(format!("{op}: the sizes overflow")).at(list))?;
        }
    }
    let written = vals
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out: Vec<u64> = vals.iter().map(|&v| v.max(0) as u64).collect();
    match unknown {
        Some(i) => {
            if !total.is_multiple_of(known) {
                return Err(Diagnostic::new(format!(
                    "{op} to [{written}]: the {total} elements of {what} do not divide by {known}, so -1 has no size"
                ))
                .at(list)
                .help(format!("the sizes must multiply to {total}: choose sizes whose product divides it")));
            }
            out[i] = total / known;
        }
        None if known != total => {
            return Err(Diagnostic::new(format!(
                "{op} to [{written}] needs {known} elements, but {what} has {total}"
            ))
            .at(list)
            .help(format!(
                "the sizes must multiply to {total}; write -1 for one size to have it inferred"
            )))
        }
        None => {}
    }
    Ok(out)
}

fn shape_of(t: &Tensor) -> Shape {
    Shape(t.shape.iter().map(|&d| d as u64).collect())
}

// ---------------------------------------------------------------------------------------------
// The gather kernel.

/// For each output axis, the input index it reads (None: padding, the fill value), or the
/// identity.
enum AxisMap {
    Same,
    Map(Vec<Option<usize>>),
}

/// `out[o] = x[src(o)]` with `src` built per axis: output axis `i` reads input axis `perm[i]`
/// at index `maps[i](o_i)`; a `None` index reads `fill`. Permutes, rolls, pads, slices.
fn gather(x: &Tensor, out_shape: &[usize], perm: &[usize], maps: &[AxisMap], fill: f32) -> Tensor {
    let rank = out_shape.len();
    let mut in_stride = vec![1usize; x.shape.len()];
    for i in (0..x.shape.len().saturating_sub(1)).rev() {
        in_stride[i] = in_stride[i + 1] * x.shape[i + 1];
    }
    let stride: Vec<usize> = perm.iter().map(|&p| in_stride[p]).collect();
    let n: usize = out_shape.iter().product();
    let mut data = vec![0f32; n];
    if n == 0 {
        return Tensor::new(out_shape.to_vec(), data);
    }
    let last = out_shape[rank - 1];
    let idx = |axis: usize, o: usize| -> Option<usize> {
        match &maps[axis] {
            AxisMap::Same => Some(o),
            AxisMap::Map(m) => m[o],
        }
    };
    let rows_per_chunk = (1usize << 14).div_ceil(last).max(1);
    data.par_chunks_mut(last * rows_per_chunk)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (j, row) in chunk.chunks_mut(last).enumerate() {
                let mut r = c * rows_per_chunk + j;
                let mut base = Some(0usize);
                for a in (0..rank - 1).rev() {
                    let o = r % out_shape[a];
                    r /= out_shape[a];
                    base = match (base, idx(a, o)) {
                        (Some(b), Some(i)) => Some(b + i * stride[a]),
                        _ => None,
                    };
                }
                let Some(b) = base else {
                    row.fill(fill);
                    continue;
                };
                let s = stride[rank - 1];
                match &maps[rank - 1] {
                    AxisMap::Same if s == 1 => row.copy_from_slice(&x.data[b..b + last]),
                    AxisMap::Same => row
                        .iter_mut()
                        .enumerate()
                        .for_each(|(o, v)| *v = x.data[b + o * s]),
                    AxisMap::Map(m) => row.iter_mut().zip(m).for_each(|(v, i)| {
                        *v = i.map_or(fill, |i| x.data[b + i * s]);
                    }),
                }
            }
        });
    Tensor::new(out_shape.to_vec(), data)
}

/// A copy of `x` under a permutation of its axes.
pub(crate) fn permute_copy(x: &Tensor, perm: &[usize]) -> Tensor {
    let out: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let maps: Vec<AxisMap> = perm.iter().map(|_| AxisMap::Same).collect();
    gather(x, &out, perm, &maps, 0.0)
}

fn identity_perm(rank: usize) -> Vec<usize> {
    (0..rank).collect()
}

/// A copy training rule: no FLOPs, nothing saved; the gradient is the inverse copy.
fn copy_training() -> Result<Training, Diagnostic> {
    Ok(Training::default())
}

/// Receptive geometry of an op that changes the layout of the spatial axes: pointwise when the
/// shape is unchanged, otherwise it ends spatial structure (layouts refine this for tokens).
fn relayout_geometry(_inputs: &[Shape], _out: &Shape) -> Geometry {
    // Moving, merging or splitting dimensions mixes no positions: each output unit is one
    // input unit. Where the spatial axes went is the layouts' business (`Op::layouts`): the
    // receptive-field pass follows them, and ends the field when a spatial axis is dropped or
    // mixed with channels.
    Geometry::Pointwise
}

// ---------------------------------------------------------------------------------------------
// reshape / view, unsqueeze, squeeze, unflatten: views.

/// A view with a new shape: reshape, view, unsqueeze, squeeze, unflatten.
#[derive(Debug)]
struct Reshape {
    op: &'static str,
    /// The output shape without the batch.
    shape: Vec<u64>,
    label: String,
}

impl Reshape {
    fn out(&self, x: &Shape) -> Shape {
        let mut s = vec![x.0[0]];
        s.extend_from_slice(&self.shape);
        Shape(s)
    }
}

fn build_reshape(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let (vals, paths, list) = signed_list(a, "shape", "[197, 12, 64]")?;
    let per = x.numel()? / x.0[0].max(1);
    let shape = infer_sizes(
        "reshape",
        &vals,
        &paths,
        &list,
        per,
        &format!("each sample of the input {}", x.per_sample()),
    )?;
    let label = format!("reshape → {}", Shape(shape.clone()));
    Ok(Box::new(Reshape {
        op: "reshape",
        shape,
        label,
    }))
}

fn build_unsqueeze(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let d = a
        .int("dim")?
        .ok_or_else(|| a.error("dim", "unsqueeze needs `dim`").help("add `dim: 1`"))?;
    let at = a.error("dim", "").at.unwrap_or_else(|| a.node_path.clone());
    let dim = resolve_dim(d, x.rank() + 1, &at, "dim", "unsqueeze")?;
    if x.rank() > super::MAX_INPUT_RANK {
        return Err(Diagnostic::new(format!(
            "unsqueeze of the rank-{} tensor {x}: archscope's tensors have at most {} dimensions",
            x.rank(),
            super::MAX_INPUT_RANK + 1
        ))
        .at(&at));
    }
    let mut shape = x.0[1..].to_vec();
    shape.insert(dim - 1, 1);
    Ok(Box::new(Reshape {
        op: "unsqueeze",
        label: format!("unsqueeze {dim}"),
        shape,
    }))
}

fn build_squeeze(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let d = a
        .int("dim")?
        .ok_or_else(|| a.error("dim", "squeeze needs `dim`").help("add `dim: 1` (the dimension of size 1 to remove); archscope never removes every size-1 dimension at once, which would remove a batch of 1"))?;
    let at = a.error("dim", "").at.unwrap_or_else(|| a.node_path.clone());
    let dim = resolve_dim(d, x.rank(), &at, "dim", "squeeze")?;
    if x.0[dim] != 1 {
        return Err(Diagnostic::new(format!(
            "squeeze of dim {d}, which has size {} in {x}: PyTorch would leave the tensor unchanged",
            x.0[dim]
        ))
        .at(&at)
        .help("squeeze a dimension of size 1, or leave the layer out"));
    }
    let mut shape = x.0[1..].to_vec();
    shape.remove(dim - 1);
    Ok(Box::new(Reshape {
        op: "squeeze",
        label: format!("squeeze {dim}"),
        shape,
    }))
}

fn build_unflatten(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let d = a
        .int("dim")?
        .ok_or_else(|| a.error("dim", "unflatten needs `dim`").help("add `dim: 1`"))?;
    let at = a.error("dim", "").at.unwrap_or_else(|| a.node_path.clone());
    let dim = resolve_dim(d, x.rank(), &at, "dim", "unflatten")?;
    let (vals, paths, list) = signed_list(a, "sizes", "[14, 14]")?;
    let sizes = infer_sizes(
        "unflatten",
        &vals,
        &paths,
        &list,
        x.0[dim],
        &format!("dim {dim} of {x}"),
    )?;
    if x.rank() - 1 + sizes.len() > super::MAX_INPUT_RANK + 1 {
        return Err(Diagnostic::new(format!(
            "unflatten would make a rank-{} tensor; archscope's tensors have at most {} dimensions",
            x.rank() - 1 + sizes.len(),
            super::MAX_INPUT_RANK + 1
        ))
        .at(&list));
    }
    let mut shape = x.0[1..dim].to_vec();
    shape.extend_from_slice(&sizes);
    shape.extend_from_slice(&x.0[dim + 1..]);
    Ok(Box::new(Reshape {
        op: "unflatten",
        label: format!("unflatten {dim} → {}", Shape(sizes)),
        shape,
    }))
}

impl Op for Reshape {
    fn op(&self) -> &'static str {
        self.op
    }
    fn label(&self) -> String {
        self.label.clone()
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let out = self.out(&inputs[0]);
        if out.numel()? != inputs[0].numel()? {
            return Err(Diagnostic::new(format!(
                "{} to {} does not fit the input {}",
                self.op, out, inputs[0]
            )));
        }
        Ok(vec![out])
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        relayout_geometry(inputs, &self.out(&inputs[0]))
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        in_shapes: &[Shape],
        out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // Dims grouped by equal products: merged roles merge, split roles split.
        Ok(vec![inputs[0].reshape(&in_shapes[0], &out_shapes[0])])
    }
    fn is_view(&self) -> bool {
        true
    }
}

impl Kernel for Reshape {
    /// reshape, view, (un)squeeze, unflatten: `Reshape` to the output shape.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let x = e.input(0);
        super::onnx::reshape_to_output(e, &x, 0);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        Collapsed::View
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let dims = super::out_dims(self, inputs)?.remove(0);
        Ok(vec![Tensor::new(dims, inputs[0].data.clone())])
    }
    fn forward_inplace(&self, x: &mut Tensor, _weights: &[Tensor]) -> bool {
        let out = self.out(&shape_of(x));
        if out.numel().ok() != Some(x.numel() as u64) {
            return false;
        }
        x.shape = out.0.iter().map(|&d| d as usize).collect();
        true
    }
}

impl Counting for Reshape {}

// ---------------------------------------------------------------------------------------------
// permute, transpose.

#[derive(Debug, Clone)]
struct Permute {
    op: &'static str,
    perm: Vec<usize>,
    /// The module it runs as (`functional: false`: torchvision.ops.misc.Permute in ConvNeXt's
    /// blocks, MaxViT's SwapAxes for a transpose), rather than as the tensor method
    /// `x.permute(…)` / `x.transpose(…)` (the default, `None`).
    module: Option<&'static str>,
}

fn build_permute(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let (vals, paths, list) = signed_list(a, "dims", "[0, 2, 3, 1]")?;
    let rank = x.rank();
    if vals.len() != rank {
        return Err(Diagnostic::new(format!(
            "permute of the rank-{rank} tensor {x} needs {rank} dims, got {}",
            vals.len()
        ))
        .at(&list)
        .help(format!(
            "list every dimension 0..{} once, batch (0) first",
            rank - 1
        )));
    }
    let mut perm = Vec::with_capacity(rank);
    for (i, (&d, at)) in vals.iter().zip(&paths).enumerate() {
        let r = rank as i64;
        let idx = if d < 0 { d + r } else { d };
        if idx < 0 || idx >= r {
            return Err(Diagnostic::new(format!(
                "`dims` {d} is out of range for a rank-{rank} tensor"
            ))
            .at(at)
            .help(format!(
                "write a permutation of 0..{rank} (or -{rank}..-1, counted from the end)"
            )));
        }
        if perm.contains(&(idx as usize)) {
            return Err(Diagnostic::new(format!(
                "dims [{}] is not a permutation: dim {idx} appears twice",
                vals.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .at(at)
            .help(format!("list every dimension 0..{} once", rank - 1)));
        }
        if i == 0 && idx != 0 {
            return Err(Diagnostic::new(format!(
                "permute moves the batch: dims[0] is {d}, but the batch stays dim 0"
            ))
            .at(at)
            .help("start the list with 0, e.g. `dims: [0, 2, 3, 1]` (N×C×H×W → N×H×W×C)"));
        }
        perm.push(idx as usize);
    }
    // `x.permute(…)` is a tensor method: functional unless the model calls torchvision's
    // Permute module.
    let module = (!a.bool("functional", true)?).then_some("Permute");
    Ok(Box::new(Permute {
        op: "permute",
        perm,
        module,
    }))
}

fn build_transpose(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let (vals, paths, list) = signed_list(a, "dims", "[1, 2]")?;
    if vals.len() != 2 {
        return Err(Diagnostic::new(format!(
            "transpose swaps two dims: `dims: [a, b]`, got {} of them",
            vals.len()
        ))
        .at(&list));
    }
    let d0 = resolve_dim(vals[0], x.rank(), &paths[0], "dims", "transpose")?;
    let d1 = resolve_dim(vals[1], x.rank(), &paths[1], "dims", "transpose")?;
    let mut perm = identity_perm(x.rank());
    perm.swap(d0, d1);
    // `torch.swapaxes` inside torchvision's `SwapAxes` module (MaxViT's grid attention).
    let module = (!a.bool("functional", true)?).then_some("SwapAxes");
    Ok(Box::new(Permute {
        op: "transpose",
        perm,
        module,
    }))
}

impl Permute {
    fn out(&self, x: &Shape) -> Shape {
        Shape(self.perm.iter().map(|&p| x.0[p]).collect())
    }
}

impl Op for Permute {
    fn op(&self) -> &'static str {
        self.op
    }
    fn label(&self) -> String {
        format!(
            "{} [{}]",
            self.op,
            self.perm
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![self.out(&inputs[0])])
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        Ok(vec![inputs[0].permute(&self.perm)])
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        if self.perm == identity_perm(self.perm.len()) {
            Geometry::Pointwise
        } else {
            relayout_geometry(inputs, &Shape(vec![]))
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        self.module
    }
}

impl Kernel for Permute {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let perm: Vec<i64> = self.perm.iter().map(|&p| p as i64).collect();
        e.node(
            "Transpose",
            &[&x],
            &[&out],
            vec![super::onnx::ints("perm", &perm)],
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // The same permutation of the one-channel copy (its channels have one unit).
        Collapsed::Layer(Box::new(self.clone()))
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        Ok(vec![permute_copy(inputs[0], &self.perm)])
    }
}

impl Counting for Permute {
    fn training(
        &self,
        _inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        copy_training()
    }
}

// ---------------------------------------------------------------------------------------------
// roll.

#[derive(Debug)]
struct Roll {
    /// (dim, shift) pairs, shifts as written.
    shifts: Vec<(usize, i64)>,
}

fn build_roll(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let (shifts, _, sl) = signed_list(a, "shifts", "[-3, -3]")?;
    let (dims, dpaths, dl) = signed_list(a, "dims", "[1, 2]")?;
    if shifts.len() != dims.len() || dims.is_empty() {
        return Err(Diagnostic::new(format!(
            "roll needs one shift per dim: {} shifts for {} dims",
            shifts.len(),
            dims.len()
        ))
        .at(if dims.is_empty() { &dl } else { &sl })
        .help("e.g. `shifts: [-3, -3], dims: [1, 2]` (torch.roll without dims flattens the tensor, which archscope does not do)"));
    }
    let mut pairs = Vec::new();
    for ((&d, at), &s) in dims.iter().zip(&dpaths).zip(&shifts) {
        let dim = resolve_dim(d, x.rank(), at, "dims", "roll")?;
        if pairs.iter().any(|&(p, _)| p == dim) {
            return Err(Diagnostic::new(format!("roll lists dim {dim} twice"))
                .at(at)
                .help("give each dim once, with the sum of its shifts"));
        }
        pairs.push((dim, s));
    }
    Ok(Box::new(Roll { shifts: pairs }))
}

impl Op for Roll {
    fn op(&self) -> &'static str {
        "roll"
    }
    fn label(&self) -> String {
        let s: Vec<String> = self
            .shifts
            .iter()
            .map(|(d, s)| format!("{s:+} on {d}"))
            .collect();
        format!("roll {}", s.join(", "))
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        // A circular shift wraps positions around the axis.
        Geometry::Global
    }
}

impl Kernel for Roll {
    /// ONNX has no roll: per dim, the last `shift` positions then the others (`Slice`,
    /// `Concat`).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let mut y = e.input(0);
        let d = e.in_dims(0);
        let out = e.output(0);
        let last = self.shifts.len() - 1;
        for (k, &(dim, shift)) in self.shifts.iter().enumerate() {
            let n = d[dim];
            let s = shift.rem_euclid(n);
            let next = if k == last {
                out.clone()
            } else {
                e.tmp("roll")
            };
            if s == 0 {
                e.node("Identity", &[&y], &[&next], vec![]);
            } else {
                let a = e.tmp("tail");
                let b = e.tmp("head");
                let axis = dim as i64;
                super::onnx::slice(e, &y, &[axis], &[n - s], &[n], &[1], &a);
                super::onnx::slice(e, &y, &[axis], &[0], &[n - s], &[1], &b);
                e.node(
                    "Concat",
                    &[&a, &b],
                    &[&next],
                    vec![super::onnx::int("axis", axis)],
                );
            }
            y = next;
        }
        Ok(())
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let mut maps: Vec<AxisMap> = x.shape.iter().map(|_| AxisMap::Same).collect();
        for &(d, s) in &self.shifts {
            let n = x.shape[d] as i64;
            // out[i] = x[(i − s) mod n].
            maps[d] = AxisMap::Map(
                (0..n)
                    .map(|i| Some((i - s).rem_euclid(n) as usize))
                    .collect(),
            );
        }
        Ok(vec![gather(
            x,
            &x.shape,
            &identity_perm(x.shape.len()),
            &maps,
            0.0,
        )])
    }
}

impl Counting for Roll {
    fn training(
        &self,
        _inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        copy_training()
    }
}

// ---------------------------------------------------------------------------------------------
// pad.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PadMode {
    Constant,
    Reflect,
    Replicate,
    Circular,
}

#[derive(Debug, Clone)]
struct Pad {
    /// (before, after) per dim, indexed by dim (batch first); zero for dims not padded.
    pad: Vec<(u64, u64)>,
    mode: PadMode,
    value: f32,
}

fn build_pad(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let (vals, paths, list) = signed_list(a, "pad", "[1, 1, 1, 1]")?;
    let mode = match a.choice(
        "mode",
        &["constant", "reflect", "replicate", "circular"],
        "constant",
    )? {
        "reflect" => PadMode::Reflect,
        "replicate" => PadMode::Replicate,
        "circular" => PadMode::Circular,
        _ => PadMode::Constant,
    };
    let value = a.float("value", 0.0)? as f32;
    if mode != PadMode::Constant && value != 0.0 {
        return Err(a
            .error("value", "`value` is the fill of `mode: constant` only")
            .help("leave `value` out, or use `mode: constant`"));
    }
    if vals.is_empty() || vals.len() % 2 != 0 {
        return Err(Diagnostic::new(format!(
            "`pad` lists [before, after] pairs, last dim first (F.pad); got {} numbers",
            vals.len()
        ))
        .at(&list)
        .help("e.g. `pad: [0, 0, 0, 1, 0, 1]` pads the last dim by nothing, the one before by 0 and 1, the next by 0 and 1"));
    }
    let dims = vals.len() / 2;
    if dims >= x.rank() {
        return Err(Diagnostic::new(format!(
            "`pad` pads {dims} dims of the rank-{} tensor {x}: that includes the batch",
            x.rank()
        ))
        .at(&list)
        .help(format!("pad at most the last {} dims", x.rank() - 1)));
    }
    let mut pad = vec![(0u64, 0u64); x.rank()];
    for k in 0..dims {
        let dim = x.rank() - 1 - k;
        let (b, e) = (vals[2 * k], vals[2 * k + 1]);
        for (v, at) in [(b, &paths[2 * k]), (e, &paths[2 * k + 1])] {
            if v < 0 {
                return Err(Diagnostic::new(format!(
                    "negative padding {v}: F.pad would crop, archscope pads only"
                ))
                .at(at)
                .help("crop with `{op: slice, dim: …, start: …, end: …}`"));
            }
        }
        let (b, e) = (b as u64, e as u64);
        let n = x.0[dim];
        let limit = match mode {
            PadMode::Reflect => Some(n - 1),
            PadMode::Circular => Some(n),
            _ => None,
        };
        if let Some(l) = limit {
            if b > l || e > l {
                return Err(Diagnostic::new(format!(
                    "{} padding of {} on dim {dim} of size {n}: it must be at most {l}",
                    match mode {
                        PadMode::Reflect => "reflect",
                        _ => "circular",
                    },
                    b.max(e)
                ))
                .at(&list)
                .help("pad less, or use `mode: replicate` or `constant`"));
            }
        }
        pad[dim] = (b, e);
    }
    Ok(Box::new(Pad { pad, mode, value }))
}

impl Op for Pad {
    fn op(&self) -> &'static str {
        "pad"
    }
    fn label(&self) -> String {
        let p: Vec<String> = self
            .pad
            .iter()
            .enumerate()
            .filter(|(_, p)| **p != (0, 0))
            .map(|(d, (b, e))| format!("{d}:{b}+{e}"))
            .collect();
        format!("pad {}", p.join(" "))
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut s = inputs[0].clone();
        for (d, &(b, e)) in self.pad.iter().enumerate() {
            s.0[d] = add(&[s.0[d], b, e])?;
        }
        Ok(vec![s])
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        let rank = inputs[0].rank();
        let spatial_only = self.pad.iter().take(2).all(|p| *p == (0, 0));
        if (3..=5).contains(&rank) && spatial_only {
            let begin: Vec<u64> = self.pad[2..].iter().map(|p| p.0).collect();
            Geometry::Window {
                kernel: super::Axes::splat(rank - 2, 1),
                stride: super::Axes::splat(rank - 2, 1),
                pad_begin: super::Axes::new(&begin)
                    .unwrap_or_else(|| super::Axes::splat(rank - 2, 0)),
                dilation: super::Axes::splat(rank - 2, 1),
            }
        } else if self.pad[1] == (0, 0) && rank >= 3 {
            Geometry::Global
        } else {
            Geometry::Pointwise
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        None
    }
}

impl Kernel for Pad {
    /// `Pad` (constant, reflect, edge; wrap from opset 19).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let mode = match self.mode {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Replicate => "edge",
            PadMode::Circular if e.opset >= 19 => "wrap",
            PadMode::Circular => {
                return Err(
                    e.unsupported("circular padding below opset 19 (ONNX's Pad mode `wrap`)")
                )
            }
        };
        let mut pads: Vec<i64> = self.pad.iter().map(|p| p.0 as i64).collect();
        pads.extend(self.pad.iter().map(|p| p.1 as i64));
        let p = e.ints("pads", &pads);
        let v = e.scalar("value", self.value);
        e.node(
            "Pad",
            &[&x, &p, &v],
            &[&out],
            vec![super::onnx::string("mode", mode)],
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        if self.pad.iter().take(2).all(|p| *p == (0, 0)) && (3..=5).contains(&self.pad.len()) {
            // The same padding, with zeros whatever the mode (receptive fields count zero
            // padding, as for convolutions: docs/RECEPTIVE_FIELD.md).
            Collapsed::Layer(Box::new(Pad {
                mode: PadMode::Constant,
                value: 0.0,
                ..self.clone()
            }))
        } else {
            Collapsed::Stop
        }
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let mut out = x.shape.clone();
        let mut maps = Vec::with_capacity(x.shape.len());
        for (d, &(b, e)) in self.pad.iter().enumerate() {
            let (b, e, n) = (b as i64, e as i64, x.shape[d] as i64);
            if b == 0 && e == 0 {
                maps.push(AxisMap::Same);
                continue;
            }
            out[d] = (n + b + e) as usize;
            maps.push(AxisMap::Map(
                (0..n + b + e)
                    .map(|o| {
                        let i = o - b;
                        if (0..n).contains(&i) {
                            return Some(i as usize);
                        }
                        match self.mode {
                            PadMode::Constant => None,
                            PadMode::Replicate => Some(i.clamp(0, n - 1) as usize),
                            PadMode::Circular => Some(i.rem_euclid(n) as usize),
                            PadMode::Reflect => {
                                Some(if i < 0 { -i } else { 2 * (n - 1) - i } as usize)
                            }
                        }
                    })
                    .collect(),
            ));
        }
        Ok(vec![gather(
            x,
            &out,
            &identity_perm(x.shape.len()),
            &maps,
            self.value,
        )])
    }
}

impl Counting for Pad {
    fn training(
        &self,
        _inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        copy_training()
    }
}

// ---------------------------------------------------------------------------------------------
// mean, sum.

#[derive(Debug)]
struct Reduce {
    mean: bool,
    /// Reduced dims, ascending.
    dims: Vec<usize>,
    keepdim: bool,
}

fn build_reduce(a: &mut Attrs, mean: bool) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let op = if mean { "mean" } else { "sum" };
    let (vals, paths, list) = signed_list(a, "dims", "[2, 3]")?;
    if vals.is_empty() {
        return Err(Diagnostic::new(format!("{op} needs at least one dim"))
            .at(&list)
            .help("e.g. `dims: [2, 3]` (over H and W of N×C×H×W)"));
    }
    let mut dims = Vec::new();
    for (&d, at) in vals.iter().zip(&paths) {
        let dim = resolve_dim(d, x.rank(), at, "dims", op)?;
        if dims.contains(&dim) {
            return Err(Diagnostic::new(format!("{op} lists dim {dim} twice")).at(at));
        }
        dims.push(dim);
    }
    dims.sort_unstable();
    let keepdim = a.bool("keepdim", false)?;
    Ok(Box::new(Reduce {
        mean,
        dims,
        keepdim,
    }))
}

impl Op for Reduce {
    fn op(&self) -> &'static str {
        if self.mean {
            "mean"
        } else {
            "sum"
        }
    }
    fn label(&self) -> String {
        format!(
            "{} over {:?}{}",
            self.op(),
            self.dims,
            if self.keepdim { " keepdim" } else { "" }
        )
    }
    fn category(&self) -> Category {
        Category::Pooling
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let x = &inputs[0];
        let mut s = Vec::new();
        for (d, &n) in x.0.iter().enumerate() {
            if !self.dims.contains(&d) {
                s.push(n);
            } else if self.keepdim {
                s.push(1);
            }
        }
        Ok(vec![Shape(s)])
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // The reduced dims go (or stay, of size 1, with their roles).
        let mut l = inputs[0].clone();
        if !self.keepdim {
            for &d in self.dims.iter().rev() {
                l.0.remove(d);
            }
        }
        Ok(vec![l])
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // One add per input element; a mean divides each output element once.
        let adds = inputs[0].numel()?;
        let div = if self.mean { outputs[0].numel()? } else { 0 };
        Ok(Cost {
            macs: 0,
            flops: add(&[adds, div])?,
        })
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        if self.dims == [1] || inputs[0].rank() < 3 {
            Geometry::Pointwise
        } else {
            Geometry::Global
        }
    }
}

impl Kernel for Reduce {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let x = e.input(0);
        let dims: Vec<i64> = self.dims.iter().map(|&d| d as i64).collect();
        let op = if self.mean { "ReduceMean" } else { "ReduceSum" };
        let y = super::onnx::reduce(e, op, &x, &dims, self.keepdim);
        let out = e.output(0);
        e.node("Identity", &[&y], &[&out], vec![]);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        if self.dims == [1] && self.keepdim {
            Collapsed::Identity
        } else {
            Collapsed::Stop
        }
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let rank = x.shape.len();
        // Strides of the output, in input coordinates (0 on reduced axes).
        let mut ostride = vec![0usize; rank];
        let mut acc = 1;
        for d in (0..rank).rev() {
            if !self.dims.contains(&d) {
                ostride[d] = acc;
                acc *= x.shape[d];
            }
        }
        let outn: usize = dims.iter().product();
        let mut sums = vec![0f64; outn];
        let last = x.shape[rank - 1];
        let last_reduced = self.dims.contains(&(rank - 1));
        for (row, chunk) in x.data.chunks(last.max(1)).enumerate() {
            let mut r = row;
            let mut base = 0;
            for d in (0..rank - 1).rev() {
                base += (r % x.shape[d]) * ostride[d];
                r /= x.shape[d];
            }
            if last_reduced {
                sums[base] += chunk.iter().map(|&v| f64::from(v)).sum::<f64>();
            } else {
                for (s, &v) in sums[base..base + last].iter_mut().zip(chunk) {
                    *s += f64::from(v);
                }
            }
        }
        let count = (x.numel() / outn.max(1)) as f64;
        let data = sums
            .into_iter()
            .map(|s| if self.mean { s / count } else { s } as f32)
            .collect();
        Ok(vec![Tensor::new(dims, data)])
    }
}

impl Counting for Reduce {
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // Backward broadcasts the output gradient to the input (a mean also scales it: one
        // multiply per input element); nothing is saved.
        let x = inputs[0].numel()?;
        Ok(Training {
            forward_flops: self.cost(inputs, outputs)?.flops,
            backward_flops: if input_grad && self.mean { x } else { 0 },
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// select.

#[derive(Debug, Clone)]
struct Select {
    dim: usize,
    index: usize,
    /// The dimension is kept whole by the one-channel copy (a positional axis or a token
    /// sequence: a class token's row), from the input's layout at build.
    kept: bool,
}

fn build_select(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let d = a
        .int("dim")?
        .ok_or_else(|| a.error("dim", "select needs `dim`").help("add `dim: 1`"))?;
    let at = a.error("dim", "").at.unwrap_or_else(|| a.node_path.clone());
    let dim = resolve_dim(d, x.rank(), &at, "dim", "select")?;
    let i = a.int("index")?.ok_or_else(|| {
        a.error("index", "select needs `index`")
            .help("add `index: 0`")
    })?;
    let n = x.0[dim] as i64;
    let idx = if i < 0 { i + n } else { i };
    if idx < 0 || idx >= n {
        return Err(a
            .error(
                "index",
                format!("index {i} is outside dim {dim} of {x}, which has {n} entries"),
            )
            .help(format!("use 0..{} (or -{n}..-1 from the end)", n - 1)));
    }
    let kept = a
        .input_layout(0)
        .0
        .get(dim)
        .is_some_and(|r| r.is_positional() || *r == super::Role::Sequence);
    Ok(Box::new(Select {
        dim,
        index: idx as usize,
        kept,
    }))
}

impl Op for Select {
    fn op(&self) -> &'static str {
        "select"
    }
    fn label(&self) -> String {
        format!("select {} of dim {}", self.index, self.dim)
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut s = inputs[0].clone();
        s.0.remove(self.dim);
        Ok(vec![s])
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        let mut l = inputs[0].clone();
        l.0.remove(self.dim);
        Ok(vec![l])
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        if self.dim == 1 || inputs[0].rank() < 3 {
            Geometry::Pointwise
        } else {
            Geometry::Global
        }
    }
    fn is_view(&self) -> bool {
        true
    }
}

impl Kernel for Select {
    /// `Gather` of one index (a scalar, so the dimension goes).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let i = e.tmp("index");
        e.consts.push(super::onnx::Const {
            name: i.clone(),
            dims: vec![],
            data: super::onnx::ConstData::I64(vec![self.index as i64]),
        });
        e.node(
            "Gather",
            &[&x, &i],
            &[&out],
            vec![super::onnx::int("axis", self.dim as i64)],
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // A row of a positional axis or of a token sequence: the same row of the copy.
        if self.kept {
            Collapsed::Layer(Box::new(self.clone()))
        } else {
            Collapsed::Stop
        }
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let outer: usize = x.shape[..self.dim].iter().product();
        let inner: usize = x.shape[self.dim + 1..].iter().product();
        let len = x.shape[self.dim];
        let mut data = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            let s = (o * len + self.index) * inner;
            data.extend_from_slice(&x.data[s..s + inner]);
        }
        let mut shape = x.shape.clone();
        shape.remove(self.dim);
        Ok(vec![Tensor::new(shape, data)])
    }
}

impl Counting for Select {}

// ---------------------------------------------------------------------------------------------
// expand.

#[derive(Debug)]
struct Expand {
    /// Sizes without the batch (-1 resolved).
    shape: Vec<u64>,
    /// Whether the batch comes from a second input.
    batch_from_second: bool,
}

fn build_expand(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    if a.inputs.len() > 2 {
        return Err(Diagnostic::new(format!(
            "expand takes one input, or two (`in: [t, x]`: the batch of x), got {}",
            a.inputs.len()
        ))
        .at(&a.node_path));
    }
    let (vals, paths, list) = signed_list(a, "shape", "[1, 768]")?;
    if vals.len() + 1 != x.rank() {
        return Err(Diagnostic::new(format!(
            "expand of the rank-{} tensor {x} needs {} sizes (the batch left out), got {}",
            x.rank(),
            x.rank() - 1,
            vals.len()
        ))
        .at(&list)
        .help("write -1 for a size that stays"));
    }
    let mut shape = Vec::new();
    for (i, (&v, at)) in vals.iter().zip(&paths).enumerate() {
        let have = x.0[i + 1];
        let want = match v {
            -1 => have,
            v if v > 0 => v as u64,
            _ => {
                return Err(
                    Diagnostic::new(format!("expand: {v} is not a size (-1 keeps one)")).at(at),
                )
            }
        };
        if want != have && have != 1 {
            return Err(Diagnostic::new(format!(
                "expand cannot make dim {} of {x} (size {have}) {want}: only size-1 dims expand",
                i + 1
            ))
            .at(at)
            .help(format!("write {have} or -1")));
        }
        shape.push(want);
    }
    let batch_from_second = a.inputs.len() == 2;
    if batch_from_second && x.0[0] != 1 && x.0[0] != a.inputs[1].0[0] {
        return Err(Diagnostic::new(format!(
            "expand to the batch {} of input 1: dim 0 of {x} is {}, not 1",
            a.inputs[1].0[0], x.0[0]
        ))
        .at(&a.node_path));
    }
    Ok(Box::new(Expand {
        shape,
        batch_from_second,
    }))
}

impl Op for Expand {
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // The same dimensions, grown: the input's roles, the batch first.
        let mut l = inputs[0].clone();
        if l.rank() != out_shapes[0].rank() {
            l = Layout::opaque(out_shapes[0].rank());
        }
        if let Some(first) = l.0.first_mut() {
            *first = super::Role::Batch;
        }
        Ok(vec![l])
    }
    fn op(&self) -> &'static str {
        "expand"
    }
    fn label(&self) -> String {
        format!("expand → N×{}", Shape(self.shape.clone()))
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let n = if self.batch_from_second {
            inputs[1].0[0]
        } else {
            inputs[0].0[0]
        };
        let mut s = vec![n];
        s.extend_from_slice(&self.shape);
        Ok(vec![Shape(s)])
    }
    fn reads_values(&self, index: usize) -> bool {
        index == 0
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Global
    }
    fn is_view(&self) -> bool {
        true
    }
}

impl Kernel for Expand {
    /// `Expand` to the output shape (a second input lends only its batch).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let shape = e.out_dims(0);
        let s = e.ints("shape", &shape);
        e.node("Expand", &[&x, &s], &[&out], vec![]);
        Ok(())
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let maps: Vec<AxisMap> = x
            .shape
            .iter()
            .zip(&dims)
            .map(|(&have, &want)| {
                if have == want {
                    AxisMap::Same
                } else {
                    AxisMap::Map(vec![Some(0); want])
                }
            })
            .collect();
        Ok(vec![gather(
            x,
            &dims,
            &identity_perm(dims.len()),
            &maps,
            0.0,
        )])
    }
}

impl Counting for Expand {
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // A view; its gradient sums the output gradient over the expanded dims (one add per
        // output element), a new tensor of the input's size.
        let _ = inputs;
        Ok(Training {
            backward_flops: if input_grad {
                per_element(&outputs[0], 1)?
            } else {
                0
            },
            view: true,
            saved: Saved::default(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build;

    fn run(op: &str, attrs: &str, shape: &[usize]) -> Tensor {
        let s: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let (l, _) = build(op, attrs, &[&s]).unwrap();
        let n: usize = shape.iter().product();
        let x = Tensor::new(shape.to_vec(), (0..n).map(|i| i as f32).collect());
        let mut ctx = Ctx::default();
        l.forward(&[&x], &[], &mut ctx).unwrap().remove(0)
    }

    #[test]
    fn permute_as_a_module() {
        // `x.permute(…)` has no module; ConvNeXt calls torchvision's Permute module.
        let (l, _) = build("permute", "{dims: [0, 2, 3, 1]}", &[&[1, 3, 4, 5]]).unwrap();
        assert_eq!(l.torch_type(), None);
        let (l, o) = build(
            "permute",
            "{dims: [0, 2, 3, 1], functional: false}",
            &[&[1, 3, 4, 5]],
        )
        .unwrap();
        assert_eq!(l.torch_type(), Some("Permute"));
        assert_eq!(o[0].0, vec![1, 4, 5, 3]);
    }

    #[test]
    fn shapes_by_hand() {
        let (_, o) = build("reshape", "{shape: [197, 12, -1]}", &[&[2, 197, 768]]).unwrap();
        assert_eq!(o[0].0, vec![2, 197, 12, 64]);
        let (_, o) = build("permute", "{dims: [0, 2, 3, 1]}", &[&[2, 3, 4, 5]]).unwrap();
        assert_eq!(o[0].0, vec![2, 4, 5, 3]);
        let (_, o) = build("transpose", "{dims: [1, -1]}", &[&[2, 3, 4]]).unwrap();
        assert_eq!(o[0].0, vec![2, 4, 3]);
        let (_, o) = build("unflatten", "{dim: -1, sizes: [14, -1]}", &[&[1, 768, 196]]).unwrap();
        assert_eq!(o[0].0, vec![1, 768, 14, 14]);
        let (_, o) = build("mean", "{dims: [-2, -1], keepdim: true}", &[&[2, 8, 5, 5]]).unwrap();
        assert_eq!(o[0].0, vec![2, 8, 1, 1]);
        let (_, o) = build("pad", "{pad: [0, 0, 0, 1, 0, 1]}", &[&[1, 7, 7, 96]]).unwrap();
        assert_eq!(o[0].0, vec![1, 8, 8, 96]);
        let (_, o) = build("select", "{dim: 1, index: -1}", &[&[1, 197, 768]]).unwrap();
        assert_eq!(o[0].0, vec![1, 768]);
        let (_, o) = build(
            "expand",
            "{shape: [1, 768]}",
            &[&[1, 1, 768], &[4, 196, 768]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![4, 1, 768]);
    }

    #[test]
    fn kernels_by_hand() {
        // 2×3 transposed: [[0,1,2],[3,4,5]] → [[0,3],[1,4],[2,5]].
        let t = run("transpose", "{dims: [1, 2]}", &[1, 2, 3]);
        assert_eq!(t.data, vec![0., 3., 1., 4., 2., 5.]);
        // roll by +1 on [0, 1, 2, 3]: [3, 0, 1, 2].
        let t = run("roll", "{shifts: [1], dims: [1]}", &[1, 4]);
        assert_eq!(t.data, vec![3., 0., 1., 2.]);
        // reflect pad 2 of [0, 1, 2]: [2, 1, 0, 1, 2, 1, 0].
        let t = run("pad", "{pad: [2, 2], mode: reflect}", &[1, 3]);
        assert_eq!(t.data, vec![2., 1., 0., 1., 2., 1., 0.]);
        let t = run("pad", "{pad: [1, 1], mode: circular}", &[1, 3]);
        assert_eq!(t.data, vec![2., 0., 1., 2., 0.]);
        let t = run("pad", "{pad: [1, 2], mode: replicate}", &[1, 3]);
        assert_eq!(t.data, vec![0., 0., 1., 2., 2., 2.]);
        let t = run("pad", "{pad: [0, 0, 1, 0], value: -1}", &[1, 1, 2]);
        assert_eq!(t.data, vec![-1., -1., 0., 1.]);
        // mean over dim 2 of [[0,1,2],[3,4,5]]: [1, 4]; sum over dim 1: [3, 5, 7].
        assert_eq!(run("mean", "{dims: [2]}", &[1, 2, 3]).data, vec![1., 4.]);
        assert_eq!(run("sum", "{dims: [1]}", &[1, 2, 3]).data, vec![3., 5., 7.]);
        assert_eq!(
            run("select", "{dim: 2, index: 1}", &[1, 2, 3]).data,
            vec![1., 4.]
        );
    }

    #[test]
    fn located_errors_with_fixes() {
        let e = build("reshape", "{shape: [197, 12, 65]}", &[&[1, 197, 768]]).unwrap_err();
        assert_eq!(
            e.message,
            "reshape to [197, 12, 65] needs 153660 elements, but each sample of the input 197×768 has 151296"
        );
        assert!(e.help.unwrap().contains("-1"));
        let e = build("permute", "{dims: [1, 0, 2]}", &[&[1, 197, 768]]).unwrap_err();
        assert_eq!(
            e.message,
            "permute moves the batch: dims[0] is 1, but the batch stays dim 0"
        );
        let e = build("squeeze", "{dim: 1}", &[&[1, 197, 768]]).unwrap_err();
        assert!(
            e.message
                .starts_with("squeeze of dim 1, which has size 197"),
            "{e}"
        );
        let e = build("mean", "{dims: [0]}", &[&[1, 197, 768]]).unwrap_err();
        assert!(e.message.contains("the batch"), "{e}");
    }
}
