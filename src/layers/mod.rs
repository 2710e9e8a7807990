//! Layer types. What differs between types is behind three traits, one per concern:
//! [`Op`] (shape rule, parameters and buffers, MACs and FLOPs, receptive-field geometry, label,
//! category, and the structural facts design audits read), [`Kernel`] (the weights it owns, its
//! executor kernel, the inference plan's hooks, and the linearised one-channel copy
//! [`Collapsed`] that measures receptive fields) and [`Counting`] (the cost each profiler's
//! [`Convention`] charges, and what training adds: backward FLOPs and the tensors saved for
//! backward). [`Layer`] is the three together, the one handle (`Box<dyn Layer>`) every pass
//! holds. The [`REGISTRY`] lists every type with its accepted keys, arity and the norm a fused
//! `bn` becomes ([`OpType::fused_bn`]). Adding a type is one file (or one entry in a family
//! file) plus one registry line; every generic pass (graph, analysis, reports) works through
//! the traits and the registry alone, and no code outside this directory compares an op name
//! (`tests/tidy.rs`).

mod activation;
mod anchors;
mod attention;
mod attrs;
mod conv;
mod conv_nd;
pub mod layout;
mod linear;
mod matmul;
mod merge;
mod norm;
pub mod onnx;
mod param;
mod partition;
mod pool;
mod pool_nd;
mod reduce;
mod rel_attention;
mod resample;
mod reshape;
mod scalar;
mod tensor_ops;
#[cfg(test)]
mod testutil;
mod window_attention;

pub use attrs::{bool_of as attrs_bool, int_of as attrs_int, AttrDefault, Attrs, Pad4};
pub use layout::{Digit, Layout, Role};
pub use param::MAX_PARAMETER_ELEMENTS;
pub use reshape::{MAX_INPUT_RANK, MAX_OUTPUTS, MAX_TOKENS};
pub use scalar::MAX_CONSTANT_ELEMENTS;

use std::fmt;

use serde::Serialize;

use crate::error::Diagnostic;
pub use crate::geometry::Axes;
use crate::kernels::Ctx;
use crate::tensor::{Tensor, WeightSpec};

/// A tensor shape, batch first (`[N, C, H, W]`, `[N, F]`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<u64>);

impl Shape {
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements, or an error on overflow.
    pub fn numel(&self) -> Result<u64, Diagnostic> {
        self.0
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                Diagnostic::new(format!(
                    "the tensor {self} has more elements than fit in 64 bits"
                ))
                .help("the largest tensor archscope accepts has 2^40 elements: check the sizes, the input and the batch")
            })
    }
    /// Channels of an `N×C×…` tensor.
    pub fn channels(&self) -> Option<u64> {
        self.0.get(1).copied()
    }
    /// The shape without its batch dimension, as `64×56×56`.
    pub fn per_sample(&self) -> String {
        join(&self.0[1.min(self.0.len())..])
    }

    /// The shape as reports show it, given what its dimensions mean: per sample
    /// ([`Shape::per_sample`]) when dimension 0 is the batch, else whole — a `parameter`'s
    /// `[1, 1, 768]` class token, whose dimension 0 is no batch, shows as `1×1×768`.
    pub fn shown(&self, layout: &Layout) -> String {
        match layout.0.first() {
            Some(r) if *r != Role::Batch && layout.rank() == self.rank() => join(&self.0),
            _ => self.per_sample(),
        }
    }
}

fn join(d: &[u64]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", join(&self.0))
    }
}

/// Parameter and buffer counts of one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    /// Learnable parameters that receive gradients.
    pub trainable: u64,
    /// Parameters that exist but are frozen (`requires_grad = False`, e.g. a fixed Sobel filter).
    pub frozen: u64,
    /// Non-learnable state (BN running mean/var).
    pub buffers: u64,
}

impl Params {
    pub fn total(&self) -> u64 {
        self.trainable + self.frozen
    }
}

/// Arithmetic cost of one layer for one forward pass over the whole batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Multiply-accumulates of convolutions, transposed convolutions and linear layers (bias
    /// excluded); zero for every other op.
    pub macs: u64,
    /// All floating-point operations: 2 per MAC, bias adds, and the op's documented per-element
    /// cost (docs/COUNTING.md).
    pub flops: u64,
}

/// What a layer does to the receptive field, per spatial axis (one [`Axes`] value per axis:
/// `[h, w]` of an image, `[d, h, w]` of a volume, `[l]` of a signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Geometry {
    /// Each output unit sees the same position of the input (activations, norms, merges…).
    Pointwise,
    /// A sliding window (convolution, pooling, padding).
    Window {
        kernel: Axes,
        stride: Axes,
        pad_begin: Axes,
        dilation: Axes,
    },
    /// A transposed convolution: stride divides the jump.
    Transposed {
        kernel: Axes,
        stride: Axes,
        pad_begin: Axes,
        dilation: Axes,
    },
    /// Resampling from `den` to `num` units per axis (output/input size). `taps`: input units
    /// read per output unit and axis (1 nearest, 2 bilinear, 4 bicubic).
    Resize {
        num: Axes,
        den: Axes,
        taps: u64,
        align_corners: bool,
    },
    /// A crop, possibly strided: output unit `j` is input unit `offset + j·step` (per axis; a
    /// plain crop has `step` 1, a strided slice `x[..., 1::2, :]` offset 1 and step 2).
    Crop { offset: Axes, step: Axes },
    /// Every output unit depends on the whole input (linear, flatten, global pooling, softmax
    /// over space…). On an output that still has token axes (`Role::Tokens` or
    /// `Role::Sequence`: global self-attention, a token-mixing linear) the receptive field is
    /// "the whole input" (every unit sees every input position); elsewhere the output has no
    /// field.
    Global,
    /// Windowed self-attention over the positional axes of input 0 (Swin's shifted windows,
    /// MaxViT's block attention), one value per positional axis in tensor order (`[h, w]` of
    /// an `N×H×W×C` map): the axes are padded at the end to a multiple of `window` (padding
    /// carries no input), cyclically shifted by `shift` units towards the start
    /// (`torch.roll(x, -shift)`), cut into non-overlapping windows of `window` units, and each
    /// unit attends to the units of its window that lie in the same region of the unshifted
    /// map (torchvision's attention mask), before the shift is undone. `shift` is the shift
    /// applied: the op sets it to 0 where torchvision does (a window covering the whole axis).
    Partition { window: Axes, shift: Axes },
    /// Self-attention along dimension `dim` of input 0 alone, independently at every index of
    /// the other dimensions (MaxViT's `relative_position_attention` on an N×G×P×C partitioned
    /// tensor: the P tokens of each group mix). With [`Role::Part`] dimensions that is a
    /// group of map positions per unit: block attention's windows, grid attention's strided
    /// grids (docs/RECEPTIVE_FIELD.md).
    Attend { dim: usize },
    /// The inputs laid end to end along spatial axis `axis` (0 height, 1 width; a concatenation
    /// along `H` or `W`): output unit `j` of that axis is unit `j − offset` of the input that
    /// holds it, so the inputs' lattices must continue one another (docs/RECEPTIVE_FIELD.md).
    Concat { axis: usize },
    /// Outputs that are consecutive pieces of the input along spatial axis `axis` (a `split`
    /// along `H` or `W`): output `k`'s unit 0 is the input unit after the pieces before it.
    /// The layer's own field is its first output's; consumers of a later output see it
    /// shifted.
    Split { axis: usize },
}

/// A layer's linearised one-channel copy, for measuring receptive fields with the executor
/// ([`crate::exec::reach`]): weights set to 1, channels collapsed to one, so that the support
/// of a unit's value is the set of input pixels that influence it.
#[derive(Debug)]
pub enum Collapsed {
    /// Passes input 0 through, to every output (activations, norms, dropout, channel
    /// shuffle, channel split and slice, reductions over channels).
    Identity,
    /// The element-wise sum of its one-channel inputs, with broadcasting (add, multiply — the
    /// product's linearisation — and concatenation along channels). Inputs whose path is not
    /// measured are left out.
    Sum,
    /// This layer on one channel: the same window, stride, padding and dilation (a
    /// convolution with one input and one output channel, no groups and no bias; pooling;
    /// resampling; padding; cropping). Its weights are set to 1.
    Layer(Box<dyn Layer>),
    /// Windowed attention ([`Geometry::Partition`], same `window` and `shift`, over the
    /// positional axes of the one-channel input in tensor order): each output unit is the sum
    /// of the units its (masked) window lets it attend to.
    Partition { window: Axes, shift: Axes },
    /// Attention along one dimension ([`Geometry::Attend`], the same `dim` of the one-channel
    /// copy): each output unit is non-zero when any unit along `dim` at its index of the
    /// other dimensions is.
    Attend { dim: usize },
    /// Input 0's values in the shape of the output's one-channel copy (a reshape or view:
    /// row-major order is kept, so merging or splitting positional dimensions — ViT's
    /// `reshape` of N×C×14×14 to N×C×196 — only renames positions; the measurement gives up
    /// where the element counts differ, as when channels merge with space).
    View,
    /// Every positional unit of the output sees every positional unit of its inputs (global
    /// self-attention, a token-mixing linear): per sample, the union over all positions of
    /// every input, on every unit of the output.
    Mix,
    /// Not measured: a global or data-dependent layer (linear, flatten, global pooling, a
    /// softmax over space, max-unpooling). Nothing downstream of it is measured either.
    Stop,
}

/// A layer's family, for colours and legends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Input,
    Convolution,
    Activation,
    Pooling,
    Normalization,
    Merge,
    Reshape,
    Regularization,
    Resample,
    /// Attention: multi-head, scaled dot-product and windowed (its projections included).
    Attention,
}

impl Category {
    /// Every category, in legend order.
    pub const ALL: [Category; 10] = [
        Category::Input,
        Category::Convolution,
        Category::Activation,
        Category::Pooling,
        Category::Normalization,
        Category::Merge,
        Category::Reshape,
        Category::Regularization,
        Category::Resample,
        Category::Attention,
    ];

    /// The category's colour (`#rrggbb`), the one palette of the diagrams (node headers) and
    /// the HTML report's charts and table.
    pub fn colour(self) -> &'static str {
        match self {
            Category::Input => "#c9ced6",
            Category::Convolution => "#9cc9eb",
            Category::Activation => "#ffd39b",
            Category::Pooling => "#b5e0a3",
            Category::Normalization => "#d3c7ef",
            Category::Merge => "#f7a8a8",
            Category::Reshape => "#f6f0a6",
            Category::Regularization => "#bfe8e2",
            Category::Resample => "#f2c2e4",
            Category::Attention => "#f4b183",
        }
    }

    /// The category's name in legends.
    pub fn legend(self) -> &'static str {
        match self {
            Category::Input => "input / output",
            Category::Convolution => "convolution / linear",
            Category::Activation => "activation",
            Category::Pooling => "pooling",
            Category::Normalization => "normalisation",
            Category::Merge => "merge",
            Category::Reshape => "reshape",
            Category::Regularization => "regularisation",
            Category::Resample => "resample",
            Category::Attention => "attention",
        }
    }
}

/// What kind of weighted layer a [`WeightInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightedKind {
    Conv,
    Transposed,
    Linear,
}

/// The structure of a weighted layer (convolution, transposed convolution, linear), for design
/// audits. A linear layer has a 1×1 kernel, stride 1, no padding and one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightInfo {
    pub kind: WeightedKind,
    pub in_ch: u64,
    pub out_ch: u64,
    pub kernel: Axes,
    pub stride: Axes,
    /// Padding before and after each axis (top and left, bottom and right of an image).
    pub pad_begin: Axes,
    pub pad_end: Axes,
    pub dilation: Axes,
    pub groups: u64,
    pub bias: bool,
    pub trainable: bool,
}

/// A sliding window (convolution or pooling) as PyTorch sizes its output:
/// `out = ⌊(pad_begin + in + pad_end − dilation·(kernel−1) − 1) / stride⌋ + 1`, or `⌈…⌉` with
/// `ceil` (then a window may not start in the end padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kernel: Axes,
    pub stride: Axes,
    pub pad_begin: Axes,
    pub pad_end: Axes,
    pub dilation: Axes,
    pub ceil: bool,
}

/// What a normalisation layer does with statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormInfo {
    /// It subtracts a per-channel mean (batch norm, instance norm): a per-channel bias on its
    /// input cancels out.
    pub removes_channel_mean: bool,
    /// It normalises with running statistics at inference (batch norm with
    /// `track_running_stats`), collected during training.
    pub running_stats: bool,
}

/// Tensors a layer keeps for its backward pass (PyTorch autograd's saved tensors), besides
/// parameters, which are counted as weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Indices of the inputs it saves.
    pub inputs: Vec<usize>,
    /// Whether it saves its (first) output.
    pub output: bool,
    /// Bytes of extra tensors it creates only for backward (max-pool indices, dropout masks,
    /// batch-norm statistics).
    pub extra_bytes: u64,
}

/// One layer's share of a training step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Training {
    /// FLOPs of its training-mode forward pass.
    pub forward_flops: u64,
    /// FLOPs of its backward pass.
    pub backward_flops: u64,
    pub saved: Saved,
    /// Whether its output shares its input's storage in training mode (flatten does; dropout,
    /// a view at inference, does not).
    pub view: bool,
    /// Indices of the inputs whose gradient is the output gradient itself or a view of it, so
    /// that backward allocates nothing for them: both inputs of an add (the gradient passes
    /// through), every input of a concat (a slice of the output gradient). The input of a view
    /// (`view: true`) always is.
    pub grad_views: Vec<usize>,
    /// Whether it runs a matrix product through cuBLAS on a GPU (linear layers). PyTorch then
    /// keeps a cuBLAS workspace for each thread that runs one: docs/TRAINING.md.
    pub cublas: bool,
}

/// A profiler whose headline figure `totals.macs` reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// torchvision's published "GFLOPS" (= PyTorch `FlopCounterMode` / 2): conv, transposed
    /// conv and linear MACs, bias excluded. archscope's default.
    #[default]
    Torchvision,
    /// fvcore `FlopCountAnalysis(model, x).total()`.
    Fvcore,
    /// ptflops `get_model_complexity_info(model, res)` MACs (pytorch backend, defaults).
    Ptflops,
    /// thop `profile(model, inputs)` MACs.
    Thop,
    /// torchinfo `summary(model, input_size)` "Total mult-adds".
    Torchinfo,
}

impl Convention {
    pub const ALL: [Convention; 5] = [
        Convention::Torchvision,
        Convention::Fvcore,
        Convention::Ptflops,
        Convention::Thop,
        Convention::Torchinfo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Convention::Torchvision => "torchvision",
            Convention::Fvcore => "fvcore",
            Convention::Ptflops => "ptflops",
            Convention::Thop => "thop",
            Convention::Torchinfo => "torchinfo",
        }
    }

    pub fn parse(s: &str) -> Option<Convention> {
        Convention::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// What a layer is: its structure, shape rule, parameters, cost and receptive-field geometry,
/// and the structural facts the analyses, reports and audits read. Everything a pass needs
/// without running the layer.
pub trait Op: fmt::Debug + Send + Sync {
    /// The canonical op name (`conv2d`).
    fn op(&self) -> &'static str;
    /// A short description with the key settings (`conv 3×3/2 p1, 64`).
    fn label(&self) -> String;
    /// The layer's family.
    fn category(&self) -> Category;
    /// Whether two inputs give the same output, shapes and cost in either order (a sum), so a
    /// rewrite may swap them (`archscope convert` puts a block's input last).
    fn inputs_commute(&self) -> bool {
        false
    }
    /// Output shapes from input shapes. Never panics; an impossible shape is an error.
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic>;
    /// Parameters and buffers (fixed at build time from the input channels).
    fn params(&self) -> Params {
        Params::default()
    }
    /// MACs and FLOPs for these input and output shapes.
    fn cost(&self, _inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        Ok(Cost::default())
    }
    /// Receptive-field geometry.
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Pointwise
    }
    /// The [`Layout`] of each output (what each dimension means), from the inputs' layouts and
    /// the shapes; computed once at build. The default ([`layout::default_layouts`]): a model
    /// input is `[Batch, Channel, Space(0), …]`, an output of input 0's rank has input 0's
    /// layout, an output of another rank is `[Batch, Other, …]`. An op that moves, merges or
    /// splits dimensions implements it with the rules of [`layout`].
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        Ok(layout::default_layouts(inputs, out_shapes))
    }
    /// Whether the output's values depend on the values of input `index`; false for an input
    /// that only lends its size (the `like` of `in: [x, like]` on crop and upsample). Receptive
    /// fields and their alignment follow only the inputs whose values meet here.
    fn reads_values(&self, _index: usize) -> bool {
        true
    }
    /// True for a model input (`inputs:`), which computes nothing and owns no weights. (A
    /// `parameter` also has no inputs, but is not a model input.)
    fn is_input(&self) -> bool {
        false
    }
    /// For a model input of token ids (`inputs: {ids: {tokens: 1024, vocab: 50257}}`): the
    /// vocabulary its ids are drawn from (random inputs draw whole numbers below it).
    fn input_vocab(&self) -> Option<u64> {
        None
    }
    /// True when the output aliases the input (no new memory: flatten, dropout at inference…).
    fn is_view(&self) -> bool {
        false
    }
    /// The PyTorch module this layer corresponds to (`Conv2d`), if there is one.
    fn torch_type(&self) -> Option<&'static str> {
        None
    }
    /// Kernel, channels, stride, padding, groups and bias of a weighted layer.
    fn weight_info(&self) -> Option<WeightInfo> {
        None
    }
    /// The sliding window of a convolution or pooling layer (not of a transposed convolution).
    fn window(&self) -> Option<Window> {
        None
    }
    /// What a normalisation layer does with statistics.
    fn norm(&self) -> Option<NormInfo> {
        None
    }
    /// Elements a decoder keeps per generated token for this layer (its KV cache): a causal
    /// attention layer's keys and values (`2·E` for `multi_head_attention`); 0 for every other
    /// layer.
    fn kv_cache_per_token(&self, _inputs: &[Shape]) -> u64 {
        0
    }
    /// An attention layer's structure and its MACs split by product, for reports (summary's
    /// attention table and JSON, the diagrams' labels); `None` for every other layer.
    fn attention(&self, _inputs: &[Shape]) -> Result<Option<AttentionSplit>, Diagnostic> {
        Ok(None)
    }
    /// A YOLO head's anchor decoding (`dist2bbox`, `keypoint_decode`): its levels' strides and,
    /// for key points, the values per point; `run --detect` reads the head's layout from it.
    /// `None` for every other layer.
    fn anchor_decode(&self) -> Option<AnchorDecode> {
        None
    }
}

/// What [`Op::anchor_decode`] tells of a YOLO head's decoding layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorDecode {
    /// Each level's stride (pixels).
    pub strides: Vec<u64>,
    /// `None`: boxes; `Some(d)`: key points of `d` values (2: x, y; 3: and visibility).
    pub keypoint_dims: Option<u64>,
}

/// An attention layer as reports show it: its heads, and its MACs (the op's own count, the
/// torchvision convention's) split into the projections, the scores Q·Kᵀ and the weighted sum
/// attention·V; `projections + scores + values + other` is the layer's MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttentionSplit {
    /// Heads (per sample; 1 for an SDPA call on N×L×E).
    pub heads: u64,
    /// Features of a query or key per head (E/heads).
    pub head_dim: u64,
    /// Queries (L) and keys (S) per head: the tokens of the sequence or of one window.
    pub queries: u64,
    pub keys: u64,
    /// Windows per sample of a windowed attention (1 for a global one).
    pub windows: u64,
    /// MACs of the input and output projections (0 for scaled_dot_product_attention).
    pub projections: u64,
    /// MACs of Q·Kᵀ: L·S·head_dim per head, window and sample.
    pub scores: u64,
    /// MACs of attention·V: L·S·(value head size) per head, window and sample.
    pub values: u64,
    /// Any other MACs (Swin V2's continuous position-bias MLP).
    pub other: u64,
}

impl AttentionSplit {
    pub fn total(&self) -> u64 {
        self.projections
            .saturating_add(self.scores)
            .saturating_add(self.values)
            .saturating_add(self.other)
    }
}

/// How a layer runs in the executor: the weights it owns, its `forward` kernel, the hooks the
/// inference plan uses to fold, fuse and run it in place, and its linearised one-channel copy
/// for measuring receptive fields.
pub trait Kernel: Op {
    /// The linearised one-channel copy of this layer that measures receptive fields
    /// (`archscope check`); by default not measured.
    fn collapsed(&self) -> Collapsed {
        Collapsed::Stop
    }
    /// The weight tensors it owns, with PyTorch's names and layouts (for the executor).
    fn weights(&self) -> Vec<WeightSpec> {
        Vec::new()
    }
    /// Runs the layer on real tensors (`weights` as listed by [`Kernel::weights`]); kernels
    /// add the multiply-accumulates they perform to `ctx.macs`.
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic>;
    /// At inference, the per-channel affine `y = x·scale[c] + shift[c]` this layer computes, if
    /// it is one (batch norm with running statistics): the executor folds it into the layer
    /// before.
    fn channel_affine(&self, _weights: &[Tensor]) -> Option<(Vec<f32>, Vec<f32>)> {
        None
    }
    /// This layer's weights with a per-output-channel affine folded in (convolution), if it
    /// can; the result may carry a bias even when the layer has none.
    fn fold_affine(
        &self,
        _weights: &[Tensor],
        _scale: &[f32],
        _shift: &[f32],
    ) -> Option<Vec<Tensor>> {
        None
    }
    /// Inference-time preparation of the weights (after any folding), for a faster kernel
    /// on inputs and outputs of the shapes given (the layer's, as built): the weights to run
    /// with instead, if any. A convolution whose forward pass runs Winograd on those shapes
    /// appends its transformed filters (and only such a one: a filter set that no pass reads
    /// is not made).
    fn prepare(
        &self,
        _weights: &[Tensor],
        _inputs: &[Shape],
        _outputs: &[Shape],
    ) -> Option<Vec<Tensor>> {
        None
    }
    /// Computes the layer in place on its single input, when that tensor is not needed
    /// elsewhere (element-wise layers); false when it cannot.
    fn forward_inplace(&self, _x: &mut Tensor, _weights: &[Tensor]) -> bool {
        false
    }
    /// The element-wise function this layer computes, when it is one with no weights (an
    /// activation): the executor fuses it into the kernel of the layer before.
    fn pointwise(&self) -> Option<crate::kernels::Pointwise> {
        None
    }
    /// Computes a merge in place into `acc` (one of its inputs, which dies here; `index` is its
    /// position among the inputs, `rest` the others in order), then applies `epi`; false when it
    /// cannot (nothing is changed then).
    fn accumulate(
        &self,
        _acc: &mut Tensor,
        _index: usize,
        _rest: &[&Tensor],
        _epi: Option<crate::kernels::Pointwise>,
    ) -> bool {
        false
    }
    /// Whether this layer passes its input on unchanged at inference (dropout, stochastic
    /// depth): the inference plan hands the input's tensor on instead of running it, so that
    /// what follows sees its producer (EfficientNet's residual add after `stochastic_depth`
    /// fuses into the projection before it).
    fn is_identity(&self) -> bool {
        false
    }
    /// Whether this layer is the per-channel mean over the whole map of an `N×C×H×W` input
    /// (`global_avgpool`): the inference plan asks the kernel that computes its input for the
    /// means as it writes its output (`Plan::means`, `Ctx::means`), and skips it when given
    /// them.
    fn is_global_mean(&self) -> bool {
        false
    }
    /// Whether this layer is the element-wise sum of its inputs (`add`): the inference plan
    /// fuses a sum of two tensors of its output's shape into the kernel that computes one of
    /// them, which adds the other as it writes its output (`Plan::residual`).
    fn is_sum(&self) -> bool {
        false
    }
    /// The dimension this layer concatenates its inputs along, when it is a concatenation
    /// that copies them end to end (`concat`): the inference plan then has the producers
    /// write straight into their slices of its output.
    fn concat_dim(&self) -> Option<usize> {
        None
    }
    /// The groups of a channel shuffle (`channel_shuffle`: channel `g·(C/G) + i` moves to
    /// `i·G + g`): the inference plan computes one that reads a concatenation alone with that
    /// concatenation, in one copy.
    fn shuffle_groups(&self) -> Option<usize> {
        None
    }
    /// Whether the kernel reads its producers' auxiliary outputs (max-unpool reads max-pool
    /// indices): a producer skips computing them when no consumer does.
    fn reads_aux(&self) -> bool {
        false
    }
    /// Elements of the working buffers the kernel allocates besides its outputs, at most (a
    /// convolution's padded input and im2col buffer), for the executor's memory budget
    /// ([`crate::exec::check_memory`], which allows every layer at least its largest input).
    fn workspace(&self, _inputs: &[Shape], _outputs: &[Shape]) -> u64 {
        0
    }
    /// A weight this layer uses but does not own (`linear` with `tied:`: GPT-2's lm_head reads
    /// the token embedding's table): the executor appends that layer's tensor to this layer's
    /// own weights, and the graph checks that it exists with this shape.
    fn tied(&self) -> Option<Tied> {
        None
    }
    /// Writes this layer as ONNX nodes into `e` (`archscope export`): its inputs, outputs and
    /// weights are named there. By default a layer has no ONNX form: a located error.
    fn onnx(&self, e: &mut onnx::Emit) -> Result<(), Diagnostic> {
        Err(e.unsupported(&format!("the layer type `{}`", self.op())))
    }
}

/// A weight shared with another layer ([`Kernel::tied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tied {
    /// The layer that owns it, by its full path (as `summary` lists it).
    pub layer: String,
    /// Its name in that layer's [`Kernel::weights`].
    pub weight: &'static str,
    /// The shape this layer needs.
    pub shape: Vec<usize>,
}

/// What the profilers' conventions charge a layer, and what training adds to it. Every
/// method has a default; a type that keeps them all writes `impl Counting for X {}`.
pub trait Counting: Op {
    /// The cost that profiler `c` charges this layer (docs/COUNTING.md, "Conventions"): for
    /// [`Convention::Torchvision`], the MACs; tools that do not count an op charge 0, the default
    /// for every other convention.
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        match c {
            Convention::Torchvision => Ok(self.cost(inputs, outputs)?.macs),
            _ => Ok(0),
        }
    }
    /// Whether its forward pass runs a matrix product through cuBLAS on a GPU (linear layers),
    /// trained or not: PyTorch then keeps a cuBLAS workspace for the forward thread
    /// (docs/TRAINING.md).
    fn forward_cublas(&self) -> bool {
        false
    }
    /// Training: forward and backward FLOPs and the tensors saved for backward
    /// (docs/TRAINING.md). `input_grad`: whether a gradient must flow to the inputs (false when
    /// they come straight from the model input); `dtype_bytes`: the element size of
    /// activations. The default is an element-wise op: backward costs what forward costs, and
    /// the input is saved.
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        if self.is_view() {
            // A view: no arithmetic, nothing saved, its gradient a view of the output's.
            return Ok(Training {
                view: true,
                ..Default::default()
            });
        }
        let forward = self.cost(inputs, outputs)?.flops;
        Ok(Training {
            forward_flops: forward,
            backward_flops: if input_grad { forward } else { 0 },
            saved: Saved {
                inputs: if inputs.is_empty() { vec![] } else { vec![0] },
                ..Default::default()
            },
            view: self.is_view(),
            grad_views: vec![],
            cublas: false,
        })
    }
}

/// One layer, built from its attributes and the shapes of its inputs: the one handle
/// (`Box<dyn Layer>`) every pass holds. Implemented for every type that implements the three
/// concerns [`Op`], [`Kernel`] and [`Counting`]; a layer type writes those three impls, never
/// this one.
pub trait Layer: Op + Kernel + Counting {}

impl<T: Op + Kernel + Counting> Layer for T {}

/// The shape rule applied to tensors: the output dimensions for these inputs.
pub(crate) fn out_dims(
    layer: &(impl Op + ?Sized),
    inputs: &[&Tensor],
) -> Result<Vec<Vec<usize>>, Diagnostic> {
    let shapes: Vec<Shape> = inputs
        .iter()
        .map(|t| Shape(t.shape.iter().map(|&d| d as u64).collect()))
        .collect();
    Ok(layer
        .output_shapes(&shapes)?
        .into_iter()
        .map(|s| s.0.into_iter().map(|d| d as usize).collect())
        .collect())
}

/// The training rule of a weighted layer (convolution, linear): the input gradient (a
/// transposed product of the output gradient) and the weight gradient (a correlation of input
/// and output gradient) each cost the forward MACs, twice in FLOPs; the bias gradient sums the
/// output gradient; the weight gradient needs the input saved.
pub(crate) fn weighted_training(
    c: Cost,
    outputs: &[Shape],
    input_grad: bool,
    trainable: bool,
    bias: bool,
) -> Result<Training, Diagnostic> {
    let grad_input = if input_grad { 2 * c.macs } else { 0 };
    let (grad_weight, grad_bias) = if trainable {
        (2 * c.macs, if bias { outputs[0].numel()? } else { 0 })
    } else {
        (0, 0)
    };
    Ok(Training {
        forward_flops: c.flops,
        backward_flops: add(&[grad_input, grad_weight, grad_bias])?,
        saved: Saved {
            inputs: if trainable { vec![0] } else { vec![] },
            ..Default::default()
        },
        view: false,
        grad_views: vec![],
        cublas: false,
    })
}

/// How many inputs an op takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

/// A registered layer type.
pub struct OpType {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    /// Keys accepted besides the generic ones (`id`, `in`, `when`, `repeat`, `act`, `bn`).
    pub keys: &'static [&'static str],
    pub arity: Arity,
    /// The batch norm a fused `bn: true` after it becomes (`batchnorm2d` after `conv2d`,
    /// `batchnorm1d` after `linear` and `conv1d`, `batchnorm3d` after `conv3d`); None: no `bn`.
    pub fused_bn: Option<&'static str>,
    /// What the builder uses for each key left out, where that is a fixed value or another
    /// key's (`stride: 1`, `eps: 1e-5`, a pooling's `stride`: its `kernel`), and the per-axis
    /// keys ([`AttrDefault`]): `archscope convert` leaves out what equals it. A key not listed
    /// is always written.
    pub defaults: &'static [(&'static str, AttrDefault)],
    pub build: fn(&mut Attrs) -> Result<Box<dyn Layer>, Diagnostic>,
    /// One line for `docs/FORMAT.md` and error messages.
    pub summary: &'static str,
}

impl OpType {
    /// What a layer of this type builds with when `key` is left out ([`OpType::defaults`]).
    pub fn default_of(&self, key: &str) -> Option<AttrDefault> {
        self.defaults
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| *d)
    }

    /// Whether this is the model's input type (`inputs:`): the one type registered as
    /// `reshape::INPUT`. Taking no inputs does not make a type one (`parameter` takes none).
    pub fn is_input(&self) -> bool {
        self.name == reshape::INPUT.name
    }
}

impl fmt::Debug for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpType({})", self.name)
    }
}

/// Every layer type archscope knows. One line per type.
pub static REGISTRY: &[OpType] = &[
    reshape::INPUT,
    conv::CONV2D,
    conv::CONV_TRANSPOSE2D,
    conv_nd::CONV1D,
    conv_nd::CONV3D,
    conv_nd::CONV_TRANSPOSE1D,
    conv_nd::CONV_TRANSPOSE3D,
    linear::LINEAR,
    matmul::MATMUL,
    param::PARAMETER,
    param::EMBEDDING,
    reshape::FLATTEN,
    tensor_ops::RESHAPE,
    tensor_ops::PERMUTE,
    tensor_ops::TRANSPOSE,
    tensor_ops::UNSQUEEZE,
    tensor_ops::SQUEEZE,
    tensor_ops::UNFLATTEN,
    tensor_ops::ROLL,
    tensor_ops::PAD,
    tensor_ops::MEAN,
    tensor_ops::SUM,
    tensor_ops::SELECT,
    tensor_ops::EXPAND,
    partition::WINDOW_PARTITION,
    partition::WINDOW_DEPARTITION,
    pool::MAXPOOL2D,
    pool::AVGPOOL2D,
    pool::ADAPTIVE_AVGPOOL2D,
    pool::ADAPTIVE_MAXPOOL2D,
    pool_nd::MAXPOOL1D,
    pool_nd::MAXPOOL3D,
    pool_nd::AVGPOOL1D,
    pool_nd::AVGPOOL3D,
    pool_nd::ADAPTIVE_AVGPOOL1D,
    pool_nd::ADAPTIVE_AVGPOOL3D,
    pool_nd::ADAPTIVE_MAXPOOL1D,
    pool_nd::ADAPTIVE_MAXPOOL3D,
    pool::GLOBAL_AVGPOOL,
    pool::GLOBAL_MAXPOOL,
    resample::MAX_UNPOOL2D,
    resample::UPSAMPLE,
    norm::BATCHNORM2D,
    norm::BATCHNORM1D,
    norm::BATCHNORM3D,
    norm::LAYERNORM,
    norm::LAYERNORM2D,
    norm::GROUPNORM,
    norm::INSTANCENORM2D,
    norm::INSTANCENORM1D,
    norm::INSTANCENORM3D,
    norm::LOCAL_RESPONSE_NORM,
    activation::RELU,
    activation::RELU6,
    activation::LEAKY_RELU,
    activation::PRELU,
    activation::ELU,
    activation::SELU,
    activation::CELU,
    activation::GELU,
    activation::SIGMOID,
    activation::HARDSIGMOID,
    activation::TANH,
    activation::HARDTANH,
    activation::SILU,
    activation::HARDSWISH,
    activation::MISH,
    activation::SOFTPLUS,
    activation::SOFTSIGN,
    activation::SOFTMAX,
    activation::LOG_SOFTMAX,
    reshape::DROPOUT,
    reshape::DROPOUT2D,
    reshape::STOCHASTIC_DEPTH,
    merge::ADD,
    merge::MULTIPLY,
    scalar::SCALAR,
    merge::CONCAT,
    anchors::DIST2BBOX,
    anchors::KEYPOINT_DECODE,
    reshape::CHANNEL_SHUFFLE,
    reshape::SPLIT,
    reshape::SLICE,
    reshape::IDENTITY,
    reshape::ZERO_PAD2D,
    reshape::CROP,
    reduce::MAGNITUDE,
    attention::MULTI_HEAD_ATTENTION,
    attention::SCALED_DOT_PRODUCT_ATTENTION,
    window_attention::SHIFTED_WINDOW_ATTENTION,
    rel_attention::RELATIVE_POSITION_ATTENTION,
];

/// The type of the model's inputs, which the graph builder places for `inputs:`.
pub fn input_type() -> &'static OpType {
    REGISTRY
        .iter()
        .find(|t| t.is_input())
        .expect("the input type is registered")
}

/// Finds a layer type by name or alias.
pub fn lookup(name: &str) -> Option<&'static OpType> {
    REGISTRY
        .iter()
        .find(|t| t.name == name || t.aliases.contains(&name))
}

/// All names and aliases, for "did you mean".
pub fn all_names() -> impl Iterator<Item = &'static str> {
    REGISTRY
        .iter()
        .flat_map(|t| std::iter::once(t.name).chain(t.aliases.iter().copied()))
}

/// Elementwise cost: `per_element` FLOPs for each element of `shape`.
pub(crate) fn per_element(shape: &Shape, per_element: u64) -> Result<u64, Diagnostic> {
    shape
        .numel()?
        .checked_mul(per_element)
        .ok_or_else(|| Diagnostic::new(format!("FLOPs of a {shape} tensor overflow 64 bits")))
}

/// Checked product for parameter and cost arithmetic.
pub(crate) fn mul(factors: &[u64]) -> Result<u64, Diagnostic> {
    factors
        .iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b))
        .ok_or_else(overflow)
}

fn overflow() -> Diagnostic {
    Diagnostic::new("a count (parameters, MACs or bytes) overflows 64 bits")
        .help("the sizes are far too large: check the channel counts, kernel sizes and input size")
}

/// Checked sum.
pub(crate) fn add(terms: &[u64]) -> Result<u64, Diagnostic> {
    terms
        .iter()
        .try_fold(0u64, |a, &b| a.checked_add(b))
        .ok_or_else(overflow)
}

/// `[a, b]` as `a×b`, or `a` when both are equal.
pub(crate) fn pair_label(p: [u64; 2]) -> String {
    if p[0] == p[1] {
        format!("{}", p[0])
    } else {
        format!("{}×{}", p[0], p[1])
    }
}

/// Requires an `N×C×H×W` input, with a message naming the op.
pub(crate) fn need_4d(op: &str, s: &Shape) -> Result<(), Diagnostic> {
    conv_nd::need_rank(op, s, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_2d_layer_on_a_clip_says_which_layer_fits() {
        let e = need_4d("conv2d", &Shape(vec![1, 3, 4, 8, 8])).unwrap_err();
        assert_eq!(
            e.message,
            "conv2d needs an N×C×H×W input, got 1×3×4×8×8 (rank 5)"
        );
        assert_eq!(
            e.help.as_deref(),
            Some("this input is a volume N×C×D×H×W: use the 3-D layer (conv3d, maxpool3d, …)")
        );
    }

    #[test]
    fn declared_defaults_name_accepted_keys() {
        for t in REGISTRY {
            for (k, d) in t.defaults {
                assert!(
                    t.keys.contains(k),
                    "{}: default of `{k}`, not a key",
                    t.name
                );
                if let AttrDefault::AxesOf(other) = d {
                    assert!(
                        t.keys.contains(other),
                        "{}: `{k}` defaults to `{other}`",
                        t.name
                    );
                }
            }
        }
    }

    #[test]
    fn registry_names_are_unique() {
        let mut seen = HashSet::new();
        for n in all_names() {
            assert!(seen.insert(n), "duplicate op name {n}");
        }
    }

    #[test]
    fn names_round_trip() {
        for c in Convention::ALL {
            assert_eq!(Convention::parse(c.name()), Some(c));
        }
        assert_eq!(Convention::parse("flops"), None);
    }
}
