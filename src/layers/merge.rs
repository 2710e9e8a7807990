//! Merges of several tensors: elementwise add and multiply (NumPy/PyTorch broadcasting, e.g. a
//! squeeze-excitation gate N×C×1×1 times N×C×H×W) and concatenation along a dimension.

use super::{
    add, mul, Arity, AttrDefault, Attrs, Category, Collapsed, Cost, Counting, Geometry, Kernel,
    Layer, Layout, Op, OpType, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels;
use crate::kernels::Ctx;
use crate::tensor::Tensor;

pub const ADD: OpType = OpType {
    name: "add",
    aliases: &[],
    keys: &[],
    arity: Arity::AtLeast(2),
    fused_bn: None,
    defaults: &[],
    build: build_add,
    summary: "elementwise sum of two or more tensors, with broadcasting",
};

pub const MULTIPLY: OpType = OpType {
    name: "multiply",
    aliases: &["mul"],
    keys: &[],
    arity: Arity::AtLeast(2),
    fused_bn: None,
    defaults: &[],
    build: build_mul,
    summary: "elementwise product (e.g. a squeeze-excitation gate), with broadcasting",
};

pub const CONCAT: OpType = OpType {
    name: "concat",
    aliases: &["cat"],
    keys: &["dim"],
    arity: Arity::AtLeast(1),
    fused_bn: None,
    defaults: &[("dim", AttrDefault::Int(1))],
    build: build_concat,
    summary: "concatenation along `dim` (default 1, channels)",
};

#[derive(Debug)]
struct Elementwise {
    product: bool,
    n: usize,
}

fn build_add(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(Elementwise {
        product: false,
        n: a.inputs.len(),
    }))
}
fn build_mul(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(Elementwise {
        product: true,
        n: a.inputs.len(),
    }))
}

/// NumPy broadcasting of two shapes, or an error naming the axis that disagrees.
fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, (usize, u64, u64)> {
    let r = a.rank().max(b.rank());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.rank() >= r {
            a.0[i + a.rank() - r]
        } else {
            1
        };
        let db = if i + b.rank() >= r {
            b.0[i + b.rank() - r]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err((i, da, db));
        };
    }
    Ok(Shape(out))
}

impl Op for Elementwise {
    fn inputs_commute(&self) -> bool {
        // A sum of two: the same output in either order (bit for bit in f32), shapes and cost.
        !self.product && self.n == 2
    }
    fn op(&self) -> &'static str {
        if self.product {
            "multiply"
        } else {
            "add"
        }
    }
    fn label(&self) -> String {
        format!("{} ×{}", self.op(), self.n)
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        in_shapes: &[Shape],
        out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // Broadcasting aligns the inputs from the end; a learned tensor's or a gate's axes
        // take the meaning of the tensor they meet.
        Ok(vec![Layout::broadcast(
            inputs,
            in_shapes,
            out_shapes[0].rank(),
        )])
    }
    fn category(&self) -> Category {
        Category::Merge
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut acc = inputs[0].clone();
        for (k, s) in inputs.iter().enumerate().skip(1) {
            acc = broadcast(&acc, s).map_err(|(axis, da, db)| {
                let what = if axis == 1 { "channels" } else { "sizes" };
                let mut d = Diagnostic::new(format!(
                    "{} inputs disagree in {what}: input 0 is {} but input {k} is {s}",
                    self.op(),
                    inputs[0]
                ))
                .note(format!("dimension {axis}: {da} vs {db}, and neither is 1"));
                d = d.help(if axis == 1 && self.op() == "multiply" {
                    format!(
                        "a gate has the channels of what it scales ({da}) or 1: make the layer feeding input {k} produce {da} channels"
                    )
                } else if axis == 1 {
                    format!(
                        "project the shortcut with a 1×1 convolution to {da} channels (`{{op: conv, out: {da}, kernel: 1}}`, with the block's stride)"
                    )
                } else {
                    "make the spatial sizes agree: the same strides on both paths, or a strided 1×1 projection".to_string()
                });
                d
            })?;
        }
        Ok(vec![acc])
    }
    fn cost(&self, _inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        Ok(Cost {
            macs: 0,
            flops: mul(&[outputs[0].numel()?, self.n as u64 - 1])?,
        })
    }
}

impl Kernel for Elementwise {
    /// `Sum` (variadic, broadcasting) or a chain of `Mul`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let out = e.output(0);
        let ins: Vec<String> = e.inputs.to_vec();
        if !self.product {
            let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
            e.node(
                if ins.len() == 2 { "Add" } else { "Sum" },
                &refs,
                &[&out],
                vec![],
            );
            return Ok(());
        }
        let mut acc = ins[0].clone();
        for (k, x) in ins.iter().enumerate().skip(1) {
            acc = if k + 1 == ins.len() {
                e.node("Mul", &[&acc, x], &[&out], vec![])
            } else {
                e.step("Mul", &[&acc, x], vec![])
            };
        }
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // A sum, or a product, whose linearisation sums its inputs' contributions.
        Collapsed::Sum
    }
    fn is_sum(&self) -> bool {
        !self.product
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let dims = super::out_dims(self, inputs)?.remove(0);
        Ok(vec![if self.product {
            kernels::broadcast(inputs, &dims, |a, b| a * b)
        } else {
            kernels::broadcast(inputs, &dims, |a, b| a + b)
        }])
    }
    fn accumulate(
        &self,
        acc: &mut Tensor,
        index: usize,
        rest: &[&Tensor],
        epi: Option<kernels::Pointwise>,
    ) -> bool {
        use rayon::prelude::*;
        // Folding the others into input `index` keeps broadcast()'s order ((x0 ∘ x1) ∘ x2 …)
        // when it is the first input, or when there are two (∘ commutes exactly).
        if index != 0 && rest.len() != 1 {
            return false;
        }
        let shape = &acc.shape;
        // Each other input has the accumulator's shape, or is per channel (N×C×1×…×1).
        let per_channel = |t: &Tensor| {
            shape.len() > 2
                && t.shape.len() == shape.len()
                && t.shape[..2] == shape[..2]
                && t.shape[2..].iter().all(|&d| d == 1)
        };
        if !rest.iter().all(|t| t.shape == *shape || per_channel(t)) {
            return false;
        }
        let plane: usize = shape
            .get(2..)
            .map_or(1, |s| s.iter().product::<usize>())
            .max(1);
        let chunk = plane * (1usize << 14).div_ceil(plane);
        let product = self.product;
        acc.data
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, dst)| {
                kernels::vectorised(
                    #[inline(always)]
                    || {
                        let e0 = i * chunk;
                        for t in rest {
                            if t.shape == *shape {
                                let src = &t.data[e0..e0 + dst.len()];
                                if product {
                                    dst.iter_mut().zip(src).for_each(|(a, b)| *a *= b);
                                } else {
                                    dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
                                }
                            } else {
                                for (j, p) in dst.chunks_mut(plane).enumerate() {
                                    let v = t.data[e0 / plane + j];
                                    if product {
                                        p.iter_mut().for_each(|a| *a *= v);
                                    } else {
                                        p.iter_mut().for_each(|a| *a += v);
                                    }
                                }
                            }
                        }
                        if let Some(f) = epi {
                            f.apply(dst);
                        }
                    },
                )
            });
        true
    }
}

impl Counting for Elementwise {
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // Add passes the gradient through unchanged (no FLOPs, nothing saved); multiply saves
        // every input (each one's gradient is the gradient times the others) and multiplies
        // once per input. A broadcast input's gradient is summed over the broadcast axes:
        // one add per output element.
        let y = outputs[0].numel()?;
        let broadcast = inputs.iter().filter(|s| **s != outputs[0]).count() as u64;
        let mut backward = mul(&[y, broadcast])?;
        if self.product {
            backward = add(&[backward, mul(&[y, self.n as u64])?])?;
        }
        Ok(Training {
            forward_flops: self.cost(inputs, outputs)?.flops,
            backward_flops: backward,
            saved: Saved {
                inputs: if self.product {
                    (0..inputs.len()).collect()
                } else {
                    vec![]
                },
                ..Default::default()
            },
            view: false,
            // Add hands the output gradient to every same-shaped input as it is; a broadcast
            // input gets a new, reduced tensor; multiply allocates each input's gradient.
            grad_views: if self.product {
                vec![]
            } else {
                (0..inputs.len())
                    .filter(|&i| inputs[i] == outputs[0])
                    .collect()
            },
            cublas: false,
        })
    }
}

#[derive(Debug, Clone)]
struct Concat {
    dim: usize,
    n: usize,
    /// What the joined dimension holds (from input 0's layout at build): the positional
    /// dimension it is among the input's positional ones (`Space`, `Tokens`), if it is one.
    positional: Option<usize>,
    /// The joined dimension holds channels (features), whatever its index (channels last).
    channel: bool,
    /// The joined dimension is kept whole by the one-channel copy (a positional axis or a
    /// token sequence): the copy is the same concatenation.
    kept: bool,
}

fn build_concat(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let dim = a.dim("dim", 1, a.input().rank())?;
    if dim == 0 {
        return Err(a
            .error(
                "dim",
                "concatenating along the batch dimension is not a layer",
            )
            .help("use `dim: 1` (channels)"));
    }
    // The first input whose dimension holds input positions says which (a class token
    // joined before ViT's patch tokens holds none).
    let lays: Vec<super::Layout> = (0..a.inputs.len()).map(|k| a.input_layout(k)).collect();
    let positional = lays.iter().find_map(|l| {
        l.0.get(dim)
            .filter(|r| r.is_positional())
            .map(|_| l.0[..dim].iter().filter(|r| r.is_positional()).count())
    });
    Ok(Box::new(Concat {
        dim,
        n: a.inputs.len(),
        positional,
        channel: lays.first().and_then(|l| l.0.get(dim)) == Some(&super::Role::Channel),
        kept: lays.iter().any(|l| {
            l.0.get(dim)
                .is_some_and(|r| r.is_positional() || *r == super::Role::Sequence)
        }),
    }))
}

impl Op for Concat {
    fn op(&self) -> &'static str {
        "concat"
    }
    fn label(&self) -> String {
        format!("concat ×{}", self.n)
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        Ok(vec![Layout::concat(inputs, in_shapes, self.dim)])
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        // Along a positional axis (the layout says which: N×C×H×W's dims 2, 3, a channels-last
        // map's 1, 2): the inputs end to end; along channels, pointwise.
        match self.positional {
            Some(axis) => Geometry::Concat { axis },
            None => Geometry::Pointwise,
        }
    }
    fn category(&self) -> Category {
        Category::Merge
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let first = &inputs[0];
        let mut out = first.clone();
        out.0[self.dim] = 0;
        for (k, s) in inputs.iter().enumerate() {
            let same_rest = s.rank() == first.rank()
                && (0..s.rank()).all(|i| i == self.dim || s.0[i] == first.0[i]);
            if !same_rest {
                let mut d = Diagnostic::new(format!(
                    "concat inputs disagree outside dimension {}: input 0 is {first} but input {k} is {s}",
                    self.dim
                ));
                d = if s.rank() == 4 && first.rank() == 4 && self.dim == 1 {
                    d.help("the spatial sizes must match: check the strides and paddings of both paths (a centre `crop` fits U-Net skips)")
                } else {
                    d.help(format!(
                        "every input needs the same rank and the same sizes outside `dim: {}`: reshape or flatten the inputs first",
                        self.dim
                    ))
                };
                return Err(d);
            }
            out.0[self.dim] = out.0[self.dim]
                .checked_add(s.0[self.dim])
                .ok_or_else(|| Diagnostic::new("concatenated size overflows"))?;
        }
        Ok(vec![out])
    }
    fn is_view(&self) -> bool {
        false
    }
}

impl Kernel for Concat {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let out = e.output(0);
        let ins: Vec<String> = e.inputs.to_vec();
        let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        e.node(
            "Concat",
            &refs,
            &[&out],
            vec![super::onnx::int("axis", self.dim as i64)],
        );
        Ok(())
    }
    fn concat_dim(&self) -> Option<usize> {
        Some(self.dim)
    }
    fn collapsed(&self) -> Collapsed {
        // Along channels (first or last) the one-channel copies add up; along a positional
        // axis or a token sequence, which the copy keeps whole, the same concatenation.
        if self.channel {
            Collapsed::Sum
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
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let dims = super::out_dims(self, inputs)?.remove(0);
        let outer: usize = dims[..self.dim].iter().product();
        // Every element is written below: a kept buffer (stale values) will do.
        let mut out = ctx.output(&dims);
        let mut at = 0;
        for o in 0..outer {
            for t in inputs {
                let chunk: usize = t.shape[self.dim..].iter().product();
                out.data[at..at + chunk].copy_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
                at += chunk;
            }
        }
        debug_assert_eq!(at, out.data.len());
        Ok(vec![out])
    }
}

impl Counting for Concat {
    fn training(
        &self,
        inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // The gradient of each input is a slice (a view) of the output gradient.
        Ok(Training {
            grad_views: (0..inputs.len()).collect(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;

    #[test]
    fn broadcasting_and_errors() {
        let (_, o) = build("multiply", "{}", &[&[2, 64, 7, 7], &[2, 64, 1, 1]]).unwrap();
        assert_eq!(o[0].0, vec![2, 64, 7, 7]);
        let e = build("add", "{}", &[&[1, 256, 56, 56], &[1, 512, 56, 56]]).unwrap_err();
        assert!(e.message.contains("channels"), "{e}");
        assert!(e.help.unwrap().contains("1×1"));
        let (_, o) = build(
            "concat",
            "{}",
            &[&[1, 64, 28, 28], &[1, 128, 28, 28], &[1, 32, 28, 28]],
        )
        .unwrap();
        assert_eq!(o[0].0, vec![1, 224, 28, 28]);
        let e = build("concat", "{}", &[&[1, 64, 28, 28], &[1, 64, 26, 26]]).unwrap_err();
        assert_eq!(
            e.message,
            "concat inputs disagree outside dimension 1: input 0 is 1×64×28×28 but input 1 is 1×64×26×26"
        );
    }
}
