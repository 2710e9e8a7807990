//! Tensors and weight declarations, the bottom of the executor that layers build on: a dense
//! f32 [`Tensor`], the [`WeightSpec`] a layer declares for each weight it owns (name, shape,
//! [`WeightKind`], [`Init`]), and the executor's largest tensor. No arithmetic beyond sizes.

/// Largest tensor the executor allocates, in elements: 2^32, 16 GiB of f32. Every input,
/// weight and layer output is checked before it is allocated (the static analysis alone
/// accepts tensors up to 2^40 elements, `graph::MAX_ELEMENTS`).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 32;

/// A dense f32 tensor, row-major, batch first.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// How a weight tensor is initialised.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// He (Kaiming) uniform for ReLU networks: U(−√(6/fan_in), √(6/fan_in)), variance
    /// 2/fan_in, which keeps activations finite and non-vanishing through deep stacks (checked
    /// on resnet152).
    Kaiming {
        fan_in: usize,
    },
    /// Normal with mean 0 and standard deviation `std` (Box–Muller from the seeded
    /// generator): a `parameter`'s `init: normal`, as PyTorch's `normal_(std=…)` /
    /// `trunc_normal_(std=0.02)` (whose ±2 cut is 100 standard deviations out) initialise
    /// position embeddings and bias tables.
    Normal {
        std: f32,
    },
    Zeros,
    Ones,
    /// Every element the same value (PReLU's 0.25). Not a list: the tensor is allocated only
    /// after its size is checked.
    Constant(f32),
    /// Fixed values (e.g. a Sobel filter).
    Fixed(Vec<f32>),
}

/// Whether a tensor is a learnable parameter (counted in `params`) or a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    Trainable,
    Frozen,
    Buffer,
}

/// One weight tensor a layer owns, named as in PyTorch's `state_dict` (`weight`, `bias`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub kind: WeightKind,
    pub init: Init,
}
