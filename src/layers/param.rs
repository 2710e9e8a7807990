//! Learned tensors: `parameter` (an `nn.Parameter` used as a value: ViT's class token and
//! position embedding, ConvNeXt's layer scale, Swin's relative-position bias table) and
//! `embedding` (torch.nn.Embedding: integer token ids → vectors).
//!
//! A `parameter` node takes no inputs; its output is its weight, with the literal PyTorch shape
//! (`[1, 1, 768]`, no batch added). Its elements are counted as trainable parameters (or frozen
//! with `trainable: false`), and its output is not an activation: the analysis counts it as a
//! view of the weight (no activation memory), so that only the layers that compute with it
//! (`expand` is a view too; a `concat` or `add` allocates) are charged activation memory. It is
//! loaded under its tensor-name prefix itself (`weights_names: {cls: class_token}` reads the
//! tensor `class_token`, not `class_token.weight`).

use super::{
    mul, Arity, AttrDefault, Attrs, Category, Collapsed, Convention, Cost, Counting, Geometry,
    Kernel, Layer, Layout, Op, OpType, Params, Role, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec, MAX_TENSOR_ELEMENTS};

/// Most elements of one `parameter` or `embedding` weight: the executor's largest tensor
/// (2^32 elements, 16 GiB of f32), so that every model that builds can also run.
pub const MAX_PARAMETER_ELEMENTS: u64 = MAX_TENSOR_ELEMENTS as u64;

/// `init: normal`'s standard deviation when `std` is not given: PyTorch's usual 0.02
/// (torchvision's ViT position embedding, Swin's bias tables, GPT-2).
pub const DEFAULT_STD: f64 = 0.02;

pub const PARAMETER: OpType = OpType {
    name: "parameter",
    aliases: &["param"],
    keys: &["shape", "init", "value", "std", "trainable"],
    arity: Arity::Exactly(0),
    fused_bn: None,
    defaults: &[
        ("trainable", AttrDefault::Bool(true)),
    ],
    build: build_parameter,
    summary: "a learned tensor of the literal PyTorch `shape` (no batch added; class token [1, 1, 768]); no inputs; `init` zeros|ones|normal (`std`, default 0.02)|value; loaded under its own name (nn.Parameter)",
};

pub const EMBEDDING: OpType = OpType {
    name: "embedding",
    aliases: &[],
    keys: &["num", "dim", "trainable", "positions"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("trainable", AttrDefault::Bool(true)),
        ("positions", AttrDefault::Bool(false)),
    ],
    build: build_embedding,
    summary: "a row of a `num`×`dim` table for each integer id of its input (torch.nn.Embedding); `positions: true` looks up the positions 0…L−1 of its N×L input instead (GPT-2's wpe(arange(L)))",
};

#[derive(Debug)]
struct Parameter {
    shape: Vec<u64>,
    init: Init,
    trainable: bool,
    numel: u64,
}

fn check_size(a: &Attrs, key: &str, shape: &[u64]) -> Result<u64, Diagnostic> {
    let n = Shape(shape.to_vec())
        .numel()
        .map_err(|d| d.at(&a.node_path))?;
    if n > MAX_PARAMETER_ELEMENTS {
        return Err(a
            .error(
                key,
                format!(
                    "a learned tensor of {} = {n} elements; archscope's largest is 2^32 = {MAX_PARAMETER_ELEMENTS} (16 GiB of f32)",
                    Shape(shape.to_vec())
                ),
            )
            .help("check the sizes"));
    }
    Ok(n)
}

fn build_parameter(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let shape = a.int_list("shape")?.ok_or_else(|| {
        Diagnostic::new("parameter needs `shape`")
            .at(&a.node_path)
            .help("add the nn.Parameter's shape as PyTorch has it, e.g. `shape: [1, 1, 768]`")
    })?;
    if shape.is_empty() || shape.len() > super::MAX_INPUT_RANK + 1 {
        return Err(a.error(
            "shape",
            format!(
                "a parameter of {} dimensions; it has 1 to {}",
                shape.len(),
                super::MAX_INPUT_RANK + 1
            ),
        ));
    }
    let numel = check_size(a, "shape", &shape)?;
    let kind = a.choice("init", &["zeros", "ones", "normal", "value"], "normal")?;
    let value = a.float("value", f64::NAN)?;
    let init = match kind {
        "zeros" => Init::Zeros,
        "ones" => Init::Ones,
        "value" if value.is_nan() => {
            return Err(a
                .error("init", "`init: value` needs `value`")
                .help("add e.g. `value: 1.0e-6` (ConvNeXt's layer scale)"))
        }
        "value" => Init::Constant(value as f32),
        _ => Init::Normal { std: 0.0 },
    };
    if kind != "value" && !value.is_nan() {
        return Err(a
            .error("value", "`value` has no effect without `init: value`")
            .help("write `init: value` with it, or leave `value` out"));
    }
    // `init: normal`'s standard deviation: 0.02 by default, what torchvision's ViT
    // (pos_embedding.normal_(std=0.02)) and Swin (trunc_normal_(std=0.02)) and GPT-2 use.
    let std = a.float("std", f64::NAN)?;
    let init = match init {
        Init::Normal { .. } => {
            let std = if std.is_nan() { DEFAULT_STD } else { std };
            if !(std.is_finite() && std > 0.0 && std <= f64::from(f32::MAX)) {
                return Err(a
                    .error(
                        "std",
                        format!("`std: {std}` is not a positive standard deviation"),
                    )
                    .help("write a positive number, e.g. `std: 0.02` (the default)"));
            }
            Init::Normal { std: std as f32 }
        }
        _ if !std.is_nan() => {
            return Err(a
                .error("std", format!("`std` has no effect with `init: {kind}`"))
                .help("write `init: normal` with it, or leave `std` out"));
        }
        other => other,
    };
    let trainable = a.bool("trainable", true)?;
    Ok(Box::new(Parameter {
        shape,
        init,
        trainable,
        numel,
    }))
}

impl Op for Parameter {
    fn op(&self) -> &'static str {
        "parameter"
    }
    fn label(&self) -> String {
        format!("parameter {}", Shape(self.shape.clone()))
    }
    fn category(&self) -> Category {
        Category::Input
    }
    fn output_shapes(&self, _inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![Shape(self.shape.clone())])
    }
    fn layouts(
        &self,
        _inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // A learned tensor's dims say nothing (its dim 0 is no batch): every one `Other`, which
        // a broadcast defers to the other input's roles.
        Ok(vec![Layout(vec![Role::Other; self.shape.len()])])
    }
    fn params(&self) -> Params {
        if self.trainable {
            Params {
                trainable: self.numel,
                ..Default::default()
            }
        } else {
            Params {
                frozen: self.numel,
                ..Default::default()
            }
        }
    }
    fn is_view(&self) -> bool {
        // Its output is its weight: no activation memory.
        true
    }
    fn torch_type(&self) -> Option<&'static str> {
        None
    }
}

impl Kernel for Parameter {
    /// The initializer itself, through `Identity` (the layer's output keeps its path).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (w, out) = (e.weight(0), e.output(0));
        e.node("Identity", &[&w], &[&out], vec![]);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        Collapsed::Stop
    }
    fn weights(&self) -> Vec<WeightSpec> {
        vec![WeightSpec {
            // Empty: the tensor's name is the layer's prefix itself.
            name: "",
            shape: self.shape.iter().map(|&d| d as usize).collect(),
            kind: if self.trainable {
                WeightKind::Trainable
            } else {
                WeightKind::Frozen
            },
            init: self.init.clone(),
        }]
    }
    fn forward(
        &self,
        _inputs: &[&Tensor],
        weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        Ok(vec![weights[0].clone()])
    }
}

impl Counting for Parameter {
    fn convention_cost(
        &self,
        _c: Convention,
        _inputs: &[Shape],
        _outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        // No tool charges reading a parameter.
        Ok(0)
    }
}

#[derive(Debug)]
struct Embedding {
    num: u64,
    dim: u64,
    trainable: bool,
    /// `positions: true`: the rows looked up are the positions 0…L−1 along the input's last
    /// axis (a position embedding, `wpe(arange(L))`), not the input's values; the input lends
    /// only its shape.
    positions: bool,
}

fn build_embedding(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let num = a.req_positive("num", "50257")?;
    let dim = a.req_positive("dim", "768")?;
    check_size(a, "num", &[num, dim])?;
    if x.rank() > super::MAX_INPUT_RANK {
        return Err(Diagnostic::new(format!(
            "embedding of the rank-{} input {x} would make a rank-{} tensor; archscope's tensors have at most {}",
            x.rank(),
            x.rank() + 1,
            super::MAX_INPUT_RANK + 1
        ))
        .at(&a.node_path));
    }
    let trainable = a.bool("trainable", true)?;
    let positions = a.bool("positions", false)?;
    if positions {
        let len = x.0[x.rank() - 1];
        if len > num {
            return Err(a
                .error(
                    "num",
                    format!(
                        "a position embedding of {num} positions cannot cover the {len} positions of its input {x}"
                    ),
                )
                .help(format!(
                    "give a sequence of at most {num} tokens (`tokens:` or --input), or a table of at least {len} rows (`num: {len}`)"
                )));
        }
    }
    Ok(Box::new(Embedding {
        num,
        dim,
        trainable,
        positions,
    }))
}

impl Op for Embedding {
    fn op(&self) -> &'static str {
        "embedding"
    }
    fn label(&self) -> String {
        if self.positions {
            format!("position embedding {}×{}", self.num, self.dim)
        } else {
            format!("embedding {}×{}", self.num, self.dim)
        }
    }
    fn reads_values(&self, _index: usize) -> bool {
        // A position embedding reads its input's shape, not its ids.
        !self.positions
    }
    fn category(&self) -> Category {
        Category::Convolution
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut s = inputs[0].clone();
        s.0.push(self.dim);
        Ok(vec![s])
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // The ids' layout (N×S of a token input), with the vector as channels.
        let mut l = inputs[0].clone();
        l.0.push(Role::Channel);
        Ok(vec![l])
    }
    fn params(&self) -> Params {
        let n = self.num * self.dim;
        if self.trainable {
            Params {
                trainable: n,
                ..Default::default()
            }
        } else {
            Params {
                frozen: n,
                ..Default::default()
            }
        }
    }
    fn cost(&self, _inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // A gather: no arithmetic.
        Ok(Cost::default())
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Pointwise
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("Embedding")
    }
}

impl Kernel for Embedding {
    /// `Gather` of the table's rows: the ids `Cast` to int64 (archscope feeds them as f32), or
    /// for a position embedding the rows 0…L−1, `Expand`ed to the batch.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::int;
        let (x, w, out) = (e.input(0), e.weight(0), e.output(0));
        if self.positions {
            let len = *e.in_dims(0).last().expect("rank ≥ 1");
            let pos: Vec<i64> = (0..len).collect();
            let p = e.ints("positions", &pos);
            let rows = e.step("Gather", &[&w, &p], vec![int("axis", 0)]);
            let shape = e.out_dims(0);
            let s = e.ints("shape", &shape);
            e.node("Expand", &[&rows, &s], &[&out], vec![]);
        } else {
            // TensorProto.INT64 = 7
            let ids = e.step("Cast", &[&x], vec![int("to", 7)]);
            e.node("Gather", &[&w, &ids], &[&out], vec![int("axis", 0)]);
        }
        Ok(())
    }
    fn weights(&self) -> Vec<WeightSpec> {
        vec![WeightSpec {
            name: "weight",
            shape: vec![self.num as usize, self.dim as usize],
            kind: if self.trainable {
                WeightKind::Trainable
            } else {
                WeightKind::Frozen
            },
            init: Init::Kaiming {
                fan_in: self.dim as usize,
            },
        }]
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let ids = inputs[0];
        let d = self.dim as usize;
        let mut shape = ids.shape.clone();
        shape.push(d);
        let mut out = ctx.output(&shape);
        let w = &weights[0].data;
        if self.positions {
            // Row t of the table at position t of each sequence.
            let len = *ids.shape.last().expect("rank ≥ 1");
            for (i, row) in out.data.chunks_mut(d).enumerate() {
                let r = (i % len) * d;
                row.copy_from_slice(&w[r..r + d]);
            }
            return Ok(vec![out]);
        }
        for (i, (&v, row)) in ids.data.iter().zip(out.data.chunks_mut(d)).enumerate() {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as u64) < self.num) {
                let per = ids.numel() / ids.shape[0].max(1);
                return Err(Diagnostic::new(format!(
                    "token id {v} (sample {}, position {}) is outside the vocabulary 0..{} of this embedding",
                    i / per.max(1),
                    i % per.max(1),
                    self.num
                ))
                .help(format!(
                    "ids are whole numbers from 0 to {}: check the input file, or the embedding's `num`",
                    self.num - 1
                )));
            }
            let r = v as usize * d;
            row.copy_from_slice(&w[r..r + d]);
        }
        Ok(vec![out])
    }
}

impl Counting for Embedding {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        _outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        match c {
            // torchinfo: parameters × output_size[0] (the batch), as for every module with
            // parameters (measured).
            Convention::Torchinfo => mul(&[self.num, self.dim, inputs[0].0[0]]),
            // The profilers count no arithmetic in a gather (measured).
            _ => Ok(0),
        }
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // Backward scatters the output gradient into the table's gradient (one add per output
        // element, when trainable); the ids are saved. No gradient flows to the ids.
        let _ = inputs;
        Ok(Training {
            forward_flops: 0,
            backward_flops: if self.trainable {
                outputs[0].numel()?
            } else {
                0
            },
            saved: Saved {
                inputs: vec![0],
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;

    #[test]
    fn parameter_and_embedding_by_hand() {
        let (l, o) = build("parameter", "{shape: [1, 197, 768]}", &[]).unwrap();
        assert_eq!(o[0].0, vec![1, 197, 768]);
        assert_eq!(l.params().trainable, 197 * 768);
        assert_eq!(l.weights()[0].name, "");
        // GPT-2's token table: 50257·768 = 38,597,376 parameters.
        let (l, o) = build("embedding", "{num: 50257, dim: 768}", &[&[1, 1024]]).unwrap();
        assert_eq!(o[0].0, vec![1, 1024, 768]);
        assert_eq!(l.params().trainable, 38_597_376);
        // GPT-2's position table on 16 tokens: rows 0…15 of 1024, whatever the ids.
        let (l, o) = build(
            "embedding",
            "{num: 1024, dim: 768, positions: true}",
            &[&[2, 16]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![2, 16, 768]);
        assert_eq!(l.params().trainable, 786_432);
        assert!(!l.reads_values(0));
        let e = build("embedding", "{num: 8, dim: 4, positions: true}", &[&[1, 9]]).unwrap_err();
        assert_eq!(
            e.message,
            "a position embedding of 8 positions cannot cover the 9 positions of its input 1×9"
        );
        let e = build("parameter", "{shape: [1, 768], init: value}", &[]).unwrap_err();
        assert_eq!(e.message, "`init: value` needs `value`");
    }

    #[test]
    fn a_position_embedding_reads_positions_not_ids() {
        use crate::kernels::Ctx;
        use crate::tensor::Tensor;
        // Table rows r = [10r, 10r + 1]; ids 3, 0, 2 (any values) at positions 0, 1, 2.
        let (l, _) = build("embedding", "{num: 4, dim: 2, positions: true}", &[&[1, 3]]).unwrap();
        let w = Tensor::new(
            vec![4, 2],
            vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0],
        );
        let ids = Tensor::new(vec![1, 3], vec![3.0, 0.0, 2.0]);
        let mut ctx = Ctx::default();
        let y = l
            .forward(&[&ids], std::slice::from_ref(&w), &mut ctx)
            .unwrap();
        assert_eq!(y[0].data, vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
        // The same table as a token embedding reads the ids.
        let (l, _) = build("embedding", "{num: 4, dim: 2}", &[&[1, 3]]).unwrap();
        let y = l.forward(&[&ids], &[w], &mut ctx).unwrap();
        assert_eq!(y[0].data, vec![30.0, 31.0, 0.0, 1.0, 20.0, 21.0]);
    }
}
