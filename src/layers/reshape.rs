//! Layers that move data without arithmetic: the model input, flatten, dropout (identity at
//! inference, still listed), identity, channel shuffle, channel split and slice, zero padding.

use super::attrs::{int_of, positive_of, Pad4, PaddingSpec};
use super::{
    mul, per_element, Arity, AttrDefault, Attrs, Axes, Category, Collapsed, Counting, Geometry,
    Kernel, Layer, Op, OpType, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::Tensor;
use crate::yaml::YValue;

pub const CROP: OpType = OpType {
    name: "crop",
    aliases: &["center_crop"],
    keys: &["size"],
    arity: Arity::AtLeast(1),
    fused_bn: None,
    defaults: &[],
    build: build_crop,
    summary: "centre crop to `size`, or to the size of a second input `in: [x, like]` (U-Net skips; torchvision center_crop)",
};

pub const INPUT: OpType = OpType {
    name: "input",
    aliases: &[],
    keys: &["shape", "vocab"],
    arity: Arity::Exactly(0),
    fused_bn: None,
    defaults: &[],
    build: build_input,
    summary: "a model input (declared under `inputs:`)",
};

pub const FLATTEN: OpType = OpType {
    name: "flatten",
    aliases: &[],
    keys: &["start_dim", "end_dim"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("start_dim", AttrDefault::Int(1)),
        ("end_dim", AttrDefault::Int(-1)),
    ],
    build: build_flatten,
    summary: "merge dimensions start_dim..=end_dim (default 1..=-1) (torch.nn.Flatten)",
};

pub const DROPOUT: OpType = OpType {
    name: "dropout",
    aliases: &[],
    keys: &["p"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("p", AttrDefault::Float(0.5))],
    build: |a| build_dropout(a, false),
    summary: "dropout (identity at inference) (torch.nn.Dropout)",
};

pub const DROPOUT2D: OpType = OpType {
    name: "dropout2d",
    aliases: &["spatial_dropout"],
    keys: &["p"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("p", AttrDefault::Float(0.5))],
    build: |a| build_dropout(a, true),
    summary: "channel dropout (identity at inference) (torch.nn.Dropout2d)",
};

pub const STOCHASTIC_DEPTH: OpType = OpType {
    name: "stochastic_depth",
    aliases: &["drop_path"],
    keys: &["p", "mode", "depth", "linspace"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_stochastic_depth,
    summary: "drops a residual branch per sample (row) or batch, with probability p (or p·k/n at `depth: [k, n]`, or NumPy's linspace(0, p, n + 1)[k] at `linspace: [k, n]`); identity at inference (torchvision StochasticDepth)",
};

pub const IDENTITY: OpType = OpType {
    name: "identity",
    aliases: &[],
    keys: &[],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: |_| {
        Ok(Box::new(Passthrough {
            op: "identity",
            torch: "Identity",
            label: "identity".into(),
        }))
    },
    summary: "passes its input through (torch.nn.Identity)",
};

pub const CHANNEL_SHUFFLE: OpType = OpType {
    name: "channel_shuffle",
    aliases: &["shuffle"],
    keys: &["groups"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_shuffle,
    summary: "ShuffleNet channel shuffle (torch.nn.ChannelShuffle)",
};

pub const SPLIT: OpType = OpType {
    name: "split",
    aliases: &["chunk"],
    keys: &["sizes", "parts", "dim"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("dim", AttrDefault::Int(1))],
    build: build_split,
    summary:
        "split along `dim` into `parts` equal pieces or given `sizes`; refer to piece k as `name:k`",
};

pub const SLICE: OpType = OpType {
    name: "slice",
    aliases: &["narrow"],
    keys: &["dim", "start", "end", "step"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("dim", AttrDefault::Int(1)),
        ("start", AttrDefault::Int(0)),
        ("step", AttrDefault::Int(1)),
    ],
    build: build_slice,
    summary: "every `step`-th index of start..end (exclusive; negative counts from the end) of `dim` (default 1, channels) (x[:, start:end:step])",
};

pub const ZERO_PAD2D: OpType = OpType {
    name: "zero_pad2d",
    aliases: &["zeropad"],
    keys: &["padding"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[("padding", AttrDefault::Padding)],
    build: build_pad,
    summary: "zero padding: n, [h, w] or [top, left, bottom, right] (torch.nn.ZeroPad2d)",
};

#[derive(Debug)]
struct InputLayer {
    shape: Shape,
    /// For a token-id input: the vocabulary its ids come from.
    vocab: Option<u64>,
}

/// Most tokens per sample of a token-id input (`inputs: {ids: {tokens: L, vocab: V}}`).
pub const MAX_TOKENS: u64 = 1 << 20;

fn build_input(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    // The builder hands the declared shape over as `shape` (batch first); say it in the
    // user's terms.
    let dims = a
        .int_list("shape")
        .map_err(|mut d| {
            d.message = d.message.replace("`shape`", "every size of an input shape");
            if d.help.as_ref().is_none_or(|h| h.contains("`shape`")) {
                d.help = Some(
                    "an input's shape lists positive sizes per sample, e.g. `image: [3, 224, 224]`"
                        .into(),
                );
            }
            d
        })?
        .ok_or_else(|| Diagnostic::new("an input needs a shape").at(&a.node_path))?;
    if dims.len() > MAX_INPUT_RANK + 1 {
        return Err(Diagnostic::new(format!(
            "an input of {} dimensions per sample; archscope takes at most {MAX_INPUT_RANK}",
            dims.len() - 1
        ))
        .at(&a.node_path)
        .help("e.g. `image: [3, 224, 224]` (channels, height, width) or `tokens: [768]`"));
    }
    let vocab = a.positive("vocab")?;
    if vocab.is_some() && dims.len() == 2 && dims[1] > MAX_TOKENS {
        return Err(Diagnostic::new(format!(
            "a token input of {} tokens per sample; archscope takes at most {MAX_TOKENS} (2^20)",
            dims[1]
        ))
        .at(&a.node_path)
        .help("give a shorter sequence (`tokens:` or --input)"));
    }
    if vocab.is_some() && dims.len() != 2 {
        return Err(Diagnostic::new(format!(
            "a token input is one sequence of ids per sample, got {} sizes",
            dims.len() - 1
        ))
        .at(&a.node_path)
        .help("write `{tokens: 1024, vocab: 50257}` (and one size with --input)"));
    }
    Ok(Box::new(InputLayer {
        shape: Shape(dims),
        vocab,
    }))
}

impl Op for InputLayer {
    fn op(&self) -> &'static str {
        "input"
    }
    fn is_input(&self) -> bool {
        true
    }
    fn input_vocab(&self) -> Option<u64> {
        self.vocab
    }
    fn layouts(
        &self,
        _inputs: &[super::Layout],
        _in_shapes: &[Shape],
        out_shapes: &[Shape],
    ) -> Result<Vec<super::Layout>, Diagnostic> {
        Ok(vec![match self.vocab {
            // Token ids: a sequence whose units are not input positions.
            Some(_) => super::Layout(vec![super::Role::Batch, super::Role::Sequence]),
            None => super::Layout::input(out_shapes[0].rank()),
        }])
    }
    fn label(&self) -> String {
        match self.vocab {
            Some(v) => format!("token ids {} (vocabulary {v})", self.shape.per_sample()),
            None => format!("input {}", self.shape.per_sample()),
        }
    }
    fn category(&self) -> Category {
        Category::Input
    }
    fn output_shapes(&self, _inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        self.shape.numel()?;
        Ok(vec![self.shape.clone()])
    }
}

impl Kernel for InputLayer {
    /// A graph input: nothing to write.
    fn onnx(&self, _e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        Ok(())
    }
    fn forward(
        &self,
        _inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        Err(Diagnostic::new(
            "a model input is fed by the executor, not run",
        ))
    }
}

impl Counting for InputLayer {}

/// Layers whose output is their input, unchanged (a view: no new memory).
#[derive(Debug)]
struct Passthrough {
    op: &'static str,
    torch: &'static str,
    label: String,
}

impl Op for Passthrough {
    fn op(&self) -> &'static str {
        self.op
    }
    fn label(&self) -> String {
        self.label.clone()
    }
    fn category(&self) -> Category {
        if self.op == "identity" {
            Category::Reshape
        } else {
            Category::Regularization
        }
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn is_view(&self) -> bool {
        true
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(self.torch)
    }
}

impl Kernel for Passthrough {
    /// Dropout and stochastic depth at inference, identity: `Identity`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        e.node("Identity", &[&x], &[&out], vec![]);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        Collapsed::Identity
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn forward_inplace(&self, _x: &mut Tensor, _weights: &[Tensor]) -> bool {
        true
    }
    fn is_identity(&self) -> bool {
        true
    }
}

impl Counting for Passthrough {
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        _input_grad: bool,
        dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        let x = &inputs[0];
        Ok(match self.op {
            // Training dropout makes a new tensor and keeps a bool mask (1 byte per element):
            // draw + scale-multiply forward, multiply by the scaled mask backward.
            "dropout" => Training {
                forward_flops: per_element(&outputs[0], 2)?,
                backward_flops: per_element(&outputs[0], 2)?,
                saved: Saved {
                    extra_bytes: x.numel()?,
                    ..Default::default()
                },
                view: false,
                grad_views: vec![],
                cublas: false,
            },
            // Dropout2d multiplies by an N×C×1×1 noise tensor, which the product keeps.
            "dropout2d" => Training {
                forward_flops: per_element(&outputs[0], 1)?,
                backward_flops: per_element(&outputs[0], 1)?,
                saved: Saved {
                    extra_bytes: mul(&[x.0[0], x.0[1], dtype_bytes])?,
                    ..Default::default()
                },
                view: false,
                grad_views: vec![],
                cublas: false,
            },
            _ => Training {
                view: true,
                ..Default::default()
            },
        })
    }
}

fn build_dropout(a: &mut Attrs, two_d: bool) -> Result<Box<dyn Layer>, Diagnostic> {
    let p = a.float("p", 0.5)?;
    if !(0.0..1.0).contains(&p) {
        return Err(a.error(
            "p",
            format!("dropout probability must be in [0, 1), got {p}"),
        ));
    }
    if two_d {
        super::need_4d("dropout2d", a.input())?;
    }
    let (op, torch) = if two_d {
        ("dropout2d", "Dropout2d")
    } else {
        ("dropout", "Dropout")
    };
    Ok(Box::new(Passthrough {
        op,
        torch,
        label: format!("{op} {p}"),
    }))
}

fn build_stochastic_depth(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let mut p = a.float("p", 0.0)?;
    if !(0.0..1.0).contains(&p) {
        return Err(a.error("p", format!("drop probability must be in [0, 1), got {p}")));
    }
    let depth = a.raw("depth")?;
    let linspace = a.raw("linspace")?;
    if let (Some(_), Some(l)) = (&depth, &linspace) {
        return Err(Diagnostic::new("`depth` and `linspace` are two schedules: give one")
            .at(&l.path)
            .help("EfficientNet, ConvNeXt and Swin compute p·k/n (`depth: [k, n]`); MaxViT takes NumPy's linspace (`linspace: [k, n]`)"));
    }
    if let Some((v, key)) = depth
        .map(|v| (v, "depth"))
        .or(linspace.map(|v| (v, "linspace")))
    {
        // torchvision's linear schedules. `depth` (EfficientNet, ConvNeXt, Swin): block k of n
        // drops its branch with `p * float(k) / n`, computed in that order as here, so the
        // rate is PyTorch's to the last bit. `linspace` (MaxViT):
        // `np.linspace(0, p, n + 1)[k]`, which NumPy computes as `k * (p / n)` and sets the
        // last to `p` itself; the two differ in the last bit for some k (0.2·3/10 is not
        // 3·(0.2/10)).
        let help = if key == "depth" {
            "write `depth: [k, n]`, block k (from 0) of a schedule over n: the rate is p·k/n"
        } else {
            "write `linspace: [k, n]`, block k (from 0) of n + 1 rates from 0 to p: the rate is k·(p/n)"
        };
        let [k, n] = match &v.value {
            YValue::Seq(items) if items.len() == 2 => {
                [int_of(&items[0], key)?, positive_of(&items[1], key)? as i64]
            }
            _ => {
                return Err(Diagnostic::new(format!(
                    "`{key}` takes [block, blocks], found {} ({v})",
                    v.kind()
                ))
                .at(&v.path)
                .help(help))
            }
        };
        if !(0..=n).contains(&k) {
            return Err(Diagnostic::new(format!(
                "`{key}: [{k}, {n}]`: block {k} is outside 0..={n}, so the rate p·{k}/{n} is not a probability on the schedule"
            ))
            .at(&v.path)
            .help(help));
        }
        p = if key == "depth" {
            p * k as f64 / n as f64
        } else if k == n {
            p
        } else {
            k as f64 * (p / n as f64)
        };
    }
    let mode = a.choice("mode", &["row", "batch"], "row")?;
    Ok(Box::new(Passthrough {
        op: "stochastic_depth",
        torch: "StochasticDepth",
        label: format!("stochastic depth {p} {mode}"),
    }))
}

#[derive(Debug, Clone)]
struct Crop {
    size: [u64; 2],
    offset: [u64; 2],
}

/// torchvision's `center_crop` offset: round((in − out) / 2), halves to even (Python `round`).
fn centre_offset(input: u64, out: u64) -> u64 {
    let d = input - out;
    if d.is_multiple_of(2) {
        d / 2
    } else {
        let k = d / 2;
        if k.is_multiple_of(2) {
            k
        } else {
            k + 1
        }
    }
}

fn build_crop(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    super::need_4d("crop", a.input())?;
    let x = a.input().clone();
    let size = match (a.inputs.len(), a.pair("size")?) {
        (1, Some(s)) => s,
        (2, None) => {
            let like = &a.inputs[1];
            super::need_4d("crop (its second input)", like)?;
            [like.0[2], like.0[3]]
        }
        (n, _) if n > 2 => {
            return Err(
                Diagnostic::new("crop takes one input, or two (`in: [x, like]`)").at(&a.node_path),
            )
        }
        _ => {
            return Err(Diagnostic::new(
                "crop needs `size: [h, w]` or a second input `in: [x, like]`, not both",
            )
            .at(&a.node_path)
            .help("U-Net: `{op: crop, in: [enc4, up4]}` crops enc4 to up4's size"))
        }
    };
    if size[0] > x.0[2] || size[1] > x.0[3] {
        return Err(Diagnostic::new(format!(
            "cannot crop {}×{} out of a {}×{} input",
            size[0], size[1], x.0[2], x.0[3]
        ))
        .at(&a.node_path));
    }
    let offset = [
        centre_offset(x.0[2], size[0]),
        centre_offset(x.0[3], size[1]),
    ];
    Ok(Box::new(Crop { size, offset }))
}

#[derive(Debug, Clone)]
struct Flatten {
    start: usize,
    end: usize,
    /// Whether it merges input positions with something else (channels with space: a CNN
    /// head), which ends the receptive field; merging spatial axes alone into tokens keeps it.
    global: bool,
}

fn build_flatten(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let rank = a.input().rank();
    let start = a.dim("start_dim", 1, rank)?;
    let end = a.dim("end_dim", -1, rank)?;
    if start == 0 {
        return Err(a
            .error(
                "start_dim",
                "flatten from dim 0 merges the batch into the samples",
            )
            .help("start at dim 1 (the default): the batch stays dim 0"));
    }
    if end < start {
        return Err(a.error(
            "end_dim",
            format!("end_dim ({end}) comes before start_dim ({start})"),
        ));
    }
    let layout = a.input_layout(0);
    let merged = super::layout::merge_roles(
        layout.0.get(start..=end).unwrap_or(&[]),
        &a.input().0[start..=end],
    );
    let positional = layout
        .0
        .get(start..=end)
        .unwrap_or(&[])
        .iter()
        .any(|r| r.is_positional());
    let global = start != end && positional && !merged.is_positional();
    Ok(Box::new(Flatten { start, end, global }))
}

impl Op for Flatten {
    fn op(&self) -> &'static str {
        "flatten"
    }
    fn label(&self) -> String {
        "flatten".into()
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        let merged = Shape(s[self.start..=self.end].to_vec()).numel()?;
        let mut out = s[..self.start].to_vec();
        out.push(merged);
        out.extend_from_slice(&s[self.end + 1..]);
        Ok(vec![Shape(out)])
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        // Merging spatial axes with channels ends spatial structure; spatial axes alone
        // become tokens, each unit keeping its field.
        if self.global {
            Geometry::Global
        } else {
            Geometry::Pointwise
        }
    }
    fn layouts(
        &self,
        inputs: &[super::Layout],
        in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<super::Layout>, Diagnostic> {
        // Spatial axes alone become tokens; channels with space, something else.
        Ok(vec![inputs[0].flatten(self.start, self.end, &in_shapes[0])])
    }
    fn is_view(&self) -> bool {
        true
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("Flatten")
    }
}

impl Kernel for Flatten {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let x = e.input(0);
        super::onnx::reshape_to_output(e, &x, 0);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // Flattening one dimension changes nothing; positional axes alone become tokens (the
        // same flatten of the copy); merging channels with space ends the layout.
        if self.start == self.end {
            Collapsed::Identity
        } else if !self.global {
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
        let dims = super::out_dims(self, inputs)?.remove(0);
        Ok(vec![Tensor::new(dims, inputs[0].data.clone())])
    }
}

impl Counting for Flatten {}

#[derive(Debug)]
struct Shuffle {
    groups: u64,
}

fn build_shuffle(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let c = a.input().channels().unwrap_or(0);
    let groups = a.req_positive("groups", "2")?;
    if a.input().rank() < 2 || !c.is_multiple_of(groups) {
        return Err(a.error(
            "groups",
            format!("groups = {groups} must divide the {c} channels"),
        ));
    }
    Ok(Box::new(Shuffle { groups }))
}

impl Op for Shuffle {
    fn op(&self) -> &'static str {
        "channel_shuffle"
    }
    fn label(&self) -> String {
        format!("shuffle {} groups", self.groups)
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("ChannelShuffle")
    }
}

impl Kernel for Shuffle {
    /// `Reshape` to N×g×C/g×…, `Transpose` of the two group axes, `Reshape` back.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let x = e.input(0);
        let d = e.in_dims(0);
        let g = self.groups as i64;
        let mut split = vec![d[0], g, d[1] / g];
        split.extend(&d[2..]);
        let y = e.reshape(&x, &split);
        let mut perm: Vec<i64> = (0..split.len() as i64).collect();
        perm.swap(1, 2);
        let t = e.step("Transpose", &[&y], vec![super::onnx::ints("perm", &perm)]);
        super::onnx::reshape_to_output(e, &t, 0);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        Collapsed::Identity
    }
    fn shuffle_groups(&self) -> Option<usize> {
        Some(self.groups as usize)
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        // Channel c = g·(C/G) + i moves to i·G + g (PyTorch's channel_shuffle).
        let x = inputs[0];
        let (n, c) = (x.shape[0], x.shape[1]);
        let plane: usize = x.shape[2..].iter().product();
        let g = self.groups as usize;
        let per = c / g;
        // Every channel of every sample is written below (G divides C): the output needs no
        // copy of the input first (a dead tensor's buffer when there is one).
        let mut out = ctx.output(&x.shape);
        for b in 0..n {
            for gi in 0..g {
                for i in 0..per {
                    let (src, dst) = (gi * per + i, i * g + gi);
                    out.data[(b * c + dst) * plane..(b * c + dst + 1) * plane]
                        .copy_from_slice(&x.data[(b * c + src) * plane..(b * c + src + 1) * plane]);
                }
            }
        }
        Ok(vec![out])
    }
}

impl Counting for Shuffle {
    fn training(
        &self,
        _inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // A copy; its gradient is the inverse copy. Nothing saved, no FLOPs.
        Ok(Training::default())
    }
}

#[derive(Debug, Clone)]
struct Split {
    dim: usize,
    sizes: Vec<u64>,
}

/// Most dimensions of a model input, per sample (the batch comes on top). No layer adds
/// dimensions, so this bounds every tensor's rank.
pub const MAX_INPUT_RANK: usize = 8;

/// Most outputs one layer (a `split`) may have.
pub const MAX_OUTPUTS: usize = 1024;

fn build_split(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let dim = a.dim("dim", 1, x.rank())?;
    let total = x.0[dim];
    let sizes = match (a.int_list("sizes")?, a.positive("parts")?) {
        (Some(s), None) if s.len() > MAX_OUTPUTS => {
            return Err(a
                .error(
                    "sizes",
                    format!(
                        "a split into {} pieces; a layer has at most {MAX_OUTPUTS} outputs",
                        s.len()
                    ),
                )
                .help("split into fewer pieces"))
        }
        (Some(s), None) => s,
        (None, Some(p)) if p > MAX_OUTPUTS as u64 => {
            return Err(a
                .error(
                    "parts",
                    format!("a split into {p} parts; a layer has at most {MAX_OUTPUTS} outputs"),
                )
                .help("split into fewer parts"))
        }
        (None, Some(p)) => {
            if !total.is_multiple_of(p) {
                return Err(a
                    .error(
                        "parts",
                        format!("{total} does not split into {p} equal parts"),
                    )
                    .help("give explicit `sizes: [...]`"));
            }
            vec![total / p; p as usize]
        }
        _ => {
            return Err(
                Diagnostic::new("split needs exactly one of `sizes` and `parts`")
                    .at(&a.node_path)
                    .help("e.g. `parts: 2` for ShuffleNet's channel split"),
            )
        }
    };
    let sum = sizes.iter().try_fold(0u64, |acc, &x| acc.checked_add(x));
    if sum != Some(total) {
        let sum = sum.map_or_else(|| "more than 2^64".to_string(), |s| s.to_string());
        return Err(a
            .error(
                "sizes",
                format!("sizes {sizes:?} add up to {sum}, but dimension {dim} has {total}"),
            )
            .help(format!("make the sizes add up to {total}")));
    }
    Ok(Box::new(Split { dim, sizes }))
}

impl Op for Split {
    fn op(&self) -> &'static str {
        "split"
    }
    fn label(&self) -> String {
        format!("split {:?}", self.sizes)
    }
    fn geometry(&self, inputs: &[Shape]) -> Geometry {
        match (inputs[0].rank(), self.dim) {
            (3..=5, d) if d >= 2 => Geometry::Split { axis: d - 2 },
            _ => Geometry::Pointwise,
        }
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(self
            .sizes
            .iter()
            .map(|&n| {
                let mut s = inputs[0].clone();
                s.0[self.dim] = n;
                s
            })
            .collect())
    }
    fn is_view(&self) -> bool {
        true
    }
}

impl Kernel for Split {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let x = e.input(0);
        let sizes: Vec<i64> = self.sizes.iter().map(|&v| v as i64).collect();
        let sz = e.ints("split", &sizes);
        let outs: Vec<String> = e.outputs.to_vec();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        e.node(
            "Split",
            &[&x, &sz],
            &refs,
            vec![super::onnx::int("axis", self.dim as i64)],
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // Along channels every piece sees what the input sees; along a spatial axis, the same
        // split; along the batch, not measured.
        match self.dim {
            0 => Collapsed::Stop,
            1 => Collapsed::Identity,
            _ => Collapsed::Layer(Box::new(self.clone())),
        }
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let outer: usize = x.shape[..self.dim].iter().product();
        let inner: usize = x.shape[self.dim + 1..].iter().product();
        let len = x.shape[self.dim];
        let mut out = Vec::new();
        let mut start = 0;
        for &size in &self.sizes {
            let size = size as usize;
            let mut shape = x.shape.clone();
            shape[self.dim] = size;
            // Every element is written below: a kept buffer (stale values) will do.
            let mut piece = ctx.output(&shape);
            let run = size * inner;
            if run > 0 {
                for (o, to) in piece.data.chunks_exact_mut(run).enumerate() {
                    to.copy_from_slice(&x.data[(o * len + start) * inner..][..run]);
                }
            }
            debug_assert_eq!(piece.data.len(), outer * run);
            out.push(piece);
            start += size;
        }
        Ok(out)
    }
}

impl Counting for Split {}

#[derive(Debug, Clone)]
struct Slice {
    dim: usize,
    start: u64,
    end: u64,
    step: u64,
    /// What the sliced dimension holds (from the input's layout at build): the positional
    /// dimension it is among the input's positional ones (`Space`, `Tokens`), and how many
    /// there are; `None` for the channels, a sequence or another axis.
    positional: Option<(usize, usize)>,
    /// The sliced dimension holds channels (or features): each piece sees what the input sees.
    channel: bool,
    /// The sliced dimension is kept whole by the one-channel copy (a positional axis or a
    /// token sequence), so the copy is the same slice.
    kept: bool,
}

impl Slice {
    /// Output length: ⌈(end − start) / step⌉.
    fn len(&self) -> u64 {
        (self.end - self.start).div_ceil(self.step)
    }
}

fn build_slice(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let dim = a.dim("dim", 1, x.rank())?;
    if dim == 0 {
        return Err(a
            .error("dim", "slicing the batch (dim 0) is not a layer")
            .help("slice dim 1 or later: the batch stays whole"));
    }
    let len = x.0[dim];
    // Negative bounds count from the end (Python); a bound outside the dimension is an error,
    // never clamped.
    let mut bound = |key: &str, default: u64| -> Result<u64, Diagnostic> {
        match a.int(key)? {
            None => Ok(default),
            Some(i) => {
                let v = if i < 0 { i + len as i64 } else { i };
                if v < 0 || v as u64 > len {
                    return Err(a
                        .error(
                            key,
                            format!(
                                "`{key}: {i}` is outside dim {dim} of {x}, which has {len} entries"
                            ),
                        )
                        .help(format!("use 0..={len}, or -{len}..-1 from the end")));
                }
                Ok(v as u64)
            }
        }
    };
    let start = bound("start", 0)?;
    let end = bound("end", len)?;
    let step = a.positive("step")?.unwrap_or(1);
    if start >= end {
        return Err(a
            .error(
                "end",
                format!("slice {start}..{end} of dim {dim} (size {len}) is empty"),
            )
            .help("end comes after start (negative values count from the end)"));
    }
    let lay = a.input_layout(0);
    let roles = &lay.0;
    let positional = roles.get(dim).filter(|r| r.is_positional()).map(|_| {
        let pos = |r: &&super::Role| r.is_positional();
        (
            roles[..dim].iter().filter(pos).count(),
            roles.iter().filter(pos).count(),
        )
    });
    let channel = roles.get(dim) == Some(&super::Role::Channel);
    let kept = roles
        .get(dim)
        .is_some_and(|r| r.is_positional() || *r == super::Role::Sequence);
    Ok(Box::new(Slice {
        dim,
        start,
        end,
        step,
        positional,
        channel,
        kept,
    }))
}

impl Op for Slice {
    fn op(&self) -> &'static str {
        "slice"
    }
    fn label(&self) -> String {
        if self.step == 1 {
            format!("slice {}..{}", self.start, self.end)
        } else {
            format!("slice {}..{} step {}", self.start, self.end, self.step)
        }
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        // A range of rows or columns of an image (frames, rows or columns of a volume, samples
        // of a signal; of a channels-last map too: the layout says which dimension is which)
        // is a crop: output unit `j` is input unit `start + j·step` along that axis.
        match self.positional {
            Some((at, n)) if (1..=crate::geometry::MAX_SPATIAL).contains(&n) => {
                let mut offset = Axes::splat(n, 0);
                let mut step = Axes::splat(n, 1);
                offset[at] = self.start;
                step[at] = self.step;
                Geometry::Crop { offset, step }
            }
            Some(_) => Geometry::Global,
            None => Geometry::Pointwise,
        }
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut s = inputs[0].clone();
        s.0[self.dim] = self.len();
        Ok(vec![s])
    }
    fn is_view(&self) -> bool {
        true
    }
}

impl Kernel for Slice {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        super::onnx::slice(
            e,
            &x,
            &[self.dim as i64],
            &[self.start as i64],
            &[self.end as i64],
            &[self.step as i64],
            &out,
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // As `split`: channels pass through; a range of a positional axis or of a token
        // sequence, which the one-channel copy keeps whole, is the same slice.
        if self.channel {
            Collapsed::Identity
        } else if self.kept {
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
        let (len, s, e) = (x.shape[self.dim], self.start as usize, self.end as usize);
        let (step, n) = (self.step as usize, self.len() as usize);
        let mut shape = x.shape.clone();
        shape[self.dim] = n;
        let mut data = Vec::with_capacity(outer * n * inner);
        for o in 0..outer {
            if step == 1 {
                data.extend_from_slice(&x.data[(o * len + s) * inner..(o * len + e) * inner]);
            } else {
                for i in (s..e).step_by(step) {
                    data.extend_from_slice(
                        &x.data[(o * len + i) * inner..(o * len + i + 1) * inner],
                    );
                }
            }
        }
        Ok(vec![Tensor::new(shape, data)])
    }
}

impl Counting for Slice {}

#[derive(Debug, Clone)]
struct ZeroPad {
    pad: Pad4,
}

fn build_pad(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    super::need_4d("zero_pad2d", a.input())?;
    let PaddingSpec::Explicit(pad) = a.padding("padding", false)? else {
        return Err(a.error("padding", "zero_pad2d needs explicit padding"));
    };
    Ok(Box::new(ZeroPad { pad }))
}

impl Op for ZeroPad {
    fn op(&self) -> &'static str {
        "zero_pad2d"
    }
    fn label(&self) -> String {
        format!("pad {}", self.pad.label())
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        let h = s[2].checked_add(self.pad.top + self.pad.bottom);
        let w = s[3].checked_add(self.pad.left + self.pad.right);
        match (h, w) {
            (Some(h), Some(w)) => Ok(vec![Shape(vec![s[0], s[1], h, w])]),
            _ => Err(Diagnostic::new("padded size overflows")),
        }
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Window {
            kernel: [1, 1].into(),
            stride: [1, 1].into(),
            pad_begin: [self.pad.top, self.pad.left].into(),
            dilation: [1, 1].into(),
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("ZeroPad2d")
    }
}

impl Kernel for ZeroPad {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let p = self.pad;
        let pads = e.ints(
            "pads",
            &[
                0,
                0,
                p.top as i64,
                p.left as i64,
                0,
                0,
                p.bottom as i64,
                p.right as i64,
            ],
        );
        e.node(
            "Pad",
            &[&x, &pads],
            &[&out],
            vec![super::onnx::string("mode", "constant")],
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        Collapsed::Layer(Box::new(self.clone()))
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let dims = super::out_dims(self, inputs)?.remove(0);
        let (h, w, ow) = (x.shape[2], x.shape[3], dims[3]);
        let (top, left) = (self.pad.top as usize, self.pad.left as usize);
        let mut out = Tensor::zeros(&dims);
        let oplane = dims[2] * ow;
        for (bc, dst) in out.data.chunks_mut(oplane).enumerate() {
            for y in 0..h {
                let src = &x.data[(bc * h + y) * w..(bc * h + y + 1) * w];
                dst[(y + top) * ow + left..(y + top) * ow + left + w].copy_from_slice(src);
            }
        }
        Ok(vec![out])
    }
}

impl Counting for ZeroPad {}

impl Op for Crop {
    fn op(&self) -> &'static str {
        "crop"
    }
    fn label(&self) -> String {
        format!("crop → {}×{}", self.size[0], self.size[1])
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let s = &inputs[0].0;
        Ok(vec![Shape(vec![s[0], s[1], self.size[0], self.size[1]])])
    }
    fn reads_values(&self, index: usize) -> bool {
        // A second input only lends its size.
        index == 0
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Crop {
            offset: self.offset.into(),
            step: [1, 1].into(),
        }
    }
}

impl Kernel for Crop {
    /// A `Slice` of the two spatial axes (a `like` input lends only its size).
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let [t, l] = [self.offset[0] as i64, self.offset[1] as i64];
        let [h, w] = [self.size[0] as i64, self.size[1] as i64];
        super::onnx::slice(e, &x, &[2, 3], &[t, l], &[t + h, l + w], &[1, 1], &out);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // The same crop (a second input only lends its size).
        Collapsed::Layer(Box::new(self.clone()))
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let (h, w) = (x.shape[2], x.shape[3]);
        let [oh, ow] = [self.size[0] as usize, self.size[1] as usize];
        let [top, left] = [self.offset[0] as usize, self.offset[1] as usize];
        let mut data = Vec::with_capacity(x.shape[0] * x.shape[1] * oh * ow);
        for bc in 0..x.shape[0] * x.shape[1] {
            for y in top..top + oh {
                data.extend_from_slice(
                    &x.data[(bc * h + y) * w + left..(bc * h + y) * w + left + ow],
                );
            }
        }
        Ok(vec![Tensor::new(
            vec![x.shape[0], x.shape[1], oh, ow],
            data,
        )])
    }
}

impl Counting for Crop {
    fn training(
        &self,
        _inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // A copy; its gradient is the inverse copy. Nothing saved, no FLOPs.
        Ok(Training::default())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;

    #[test]
    fn shapes() {
        let (_, o) = build("flatten", "{}", &[&[2, 16, 5, 5]]).unwrap();
        assert_eq!(o[0].0, vec![2, 400]);
        let (_, o) = build("split", "{parts: 2}", &[&[1, 116, 28, 28]]).unwrap();
        assert_eq!((o[0].0[1], o[1].0[1]), (58, 58));
        let (_, o) = build("split", "{sizes: [16, 48]}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!((o[0].0[1], o[1].0[1]), (16, 48));
        let e = build("split", "{sizes: [16, 40]}", &[&[1, 64, 8, 8]]).unwrap_err();
        assert_eq!(
            e.message,
            "sizes [16, 40] add up to 56, but dimension 1 has 64"
        );
        let (_, o) = build("slice", "{start: 8, end: 24}", &[&[1, 64, 8, 8]]).unwrap();
        assert_eq!(o[0].0, vec![1, 16, 8, 8]);
        let (_, o) = build("zero_pad2d", "{padding: [0, 0, 1, 1]}", &[&[1, 3, 8, 8]]).unwrap();
        assert_eq!(o[0].0, vec![1, 3, 9, 9]);
        let e = build("dropout", "{p: 1.5}", &[&[1, 3]]).unwrap_err();
        assert_eq!(e.message, "dropout probability must be in [0, 1), got 1.5");
        // U-Net: 64² cropped to 56² starts at 4; 7 → 4 rounds 1.5 to the even 2.
        let (_, o) = build("crop", "{size: 56}", &[&[1, 512, 64, 64]]).unwrap();
        assert_eq!(o[0].0, vec![1, 512, 56, 56]);
        assert_eq!(super::centre_offset(64, 56), 4);
        assert_eq!(super::centre_offset(7, 4), 2);
        assert_eq!(super::centre_offset(6, 3), 2);
        let e = build("channel_shuffle", "{groups: 3}", &[&[1, 64, 8, 8]]).unwrap_err();
        assert_eq!(e.message, "groups = 3 must divide the 64 channels");
    }
}
