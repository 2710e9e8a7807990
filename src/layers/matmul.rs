//! Matrix products of two tensors: `matmul` (alias `bmm`), torch.matmul on operands of rank
//! 2 or more — the last two dims multiply (`…×m×k` · `…×k×n` → `…×m×n`), the leading (batch)
//! dims broadcast as in NumPy, right-aligned (attention's Q·Kᵀ on N×heads×L×d and
//! N×heads×d×L; a rank-2 weight applied to every sample). MACs: m·k·n per output matrix,
//! `numel(output)·k`; the kernel runs each output matrix on the `gemm` crate
//! (`kernels::matmul`), matrices in parallel.

use rayon::prelude::*;

use super::{
    mul, Arity, AttrDefault, Attrs, Category, Convention, Cost, Counting, Geometry, Kernel, Layer,
    Layout, Op, OpType, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::{self, Ctx};
use crate::tensor::Tensor;

pub const MATMUL: OpType = OpType {
    name: "matmul",
    aliases: &["bmm"],
    keys: &["operator"],
    arity: Arity::Exactly(2),
    fused_bn: None,
    defaults: &[
        ("operator", AttrDefault::Bool(false)),
    ],
    build: build_matmul,
    summary: "matrix product of two inputs over their last two dims, leading dims broadcast (torch.matmul / torch.bmm); `operator: true` when the model writes `a @ b`",
};

#[derive(Debug)]
struct Matmul {
    /// The model writes `a @ b` (Tensor.__matmul__), which ptflops does not patch.
    operator: bool,
}

/// The broadcast batch dims of `a` and `b` (all but their last two), or the dim that disagrees.
fn batch_dims(a: &Shape, b: &Shape) -> Result<Vec<u64>, (usize, u64, u64)> {
    let (ba, bb) = (&a.0[..a.rank() - 2], &b.0[..b.rank() - 2]);
    let r = ba.len().max(bb.len());
    let at = |s: &[u64], i: usize| -> u64 {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| {
            let (x, y) = (at(ba, i), at(bb, i));
            if x == y || y == 1 {
                Ok(x)
            } else if x == 1 {
                Ok(y)
            } else {
                Err((i, x, y))
            }
        })
        .collect()
}

fn build_matmul(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    for (k, s) in a.inputs.iter().enumerate() {
        if s.rank() < 2 {
            return Err(Diagnostic::new(format!(
                "matmul needs matrices (rank 2 or more); input {k} is {s}"
            ))
            .at(&a.node_path)
            .help("add a dimension with `{op: unsqueeze, dim: -1}`"));
        }
    }
    let m = Matmul {
        operator: a.bool("operator", false)?,
    };
    m.output_shapes(a.inputs).map_err(|d| d.at(&a.node_path))?;
    Ok(Box::new(m))
}

impl Op for Matmul {
    fn op(&self) -> &'static str {
        "matmul"
    }
    fn label(&self) -> String {
        "matmul".into()
    }
    fn category(&self) -> Category {
        Category::Convolution
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let (m, k) = (a.0[a.rank() - 2], a.0[a.rank() - 1]);
        let (k2, n) = (b.0[b.rank() - 2], b.0[b.rank() - 1]);
        if k != k2 {
            return Err(Diagnostic::new(format!(
                "matmul inner sizes differ: input 0 is {a} (…×{m}×{k}) but input 1 is {b} (…×{k2}×{n}); {k} ≠ {k2}"
            ))
            .help(
                "the last dim of input 0 must equal the second-to-last of input 1: for Q·Kᵀ transpose K first (`{op: transpose, dims: [-2, -1]}`), or check the head size",
            ));
        }
        let mut out = batch_dims(a, b).map_err(|(i, x, y)| {
            Diagnostic::new(format!(
                "matmul batch dims do not broadcast: input 0 is {a}, input 1 is {b} (batch dim {i}: {x} vs {y}, and neither is 1)"
            ))
            .help("the dims before the last two must be equal or 1 (heads, batch)")
        })?;
        out.push(m);
        out.push(n);
        Ok(vec![Shape(out)])
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        in_shapes: &[Shape],
        out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // Rows from input 0 (its batch dims broadcast with input 1's), columns from input 1:
        // Q·Kᵀ on N×h×L×d · N×h×d×L keeps both token axes; attention·V ends in V's head dims.
        let r = out_shapes[0].rank();
        let mut l = Layout::broadcast(inputs, in_shapes, r);
        l.0[r - 2] = inputs[0].0[inputs[0].rank() - 2].clone();
        l.0[r - 1] = inputs[1].0[inputs[1].rank() - 1].clone();
        if let Some(first) = l.0.first_mut() {
            *first = super::Role::Batch;
        }
        Ok(vec![l])
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let k = inputs[0].0[inputs[0].rank() - 1];
        let macs = mul(&[outputs[0].numel()?, k])?;
        Ok(Cost {
            macs,
            flops: mul(&[2, macs])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Global
    }
}

/// Offsets of each output matrix's operands in `a` and `b` (broadcast batch dims).
fn operand_offsets(a: &[usize], b: &[usize], out: &[usize]) -> Vec<(usize, usize)> {
    let r = out.len() - 2;
    let strides = |s: &[usize]| -> Vec<usize> {
        // Matrix strides of `s`'s batch dims aligned to the output's (0 where broadcast).
        let mat = s[s.len() - 2] * s[s.len() - 1];
        let sb = &s[..s.len() - 2];
        let mut st = vec![0; r];
        let mut acc = mat;
        for i in (0..sb.len()).rev() {
            let o = i + r - sb.len();
            st[o] = if sb[i] == 1 { 0 } else { acc };
            acc *= sb[i];
        }
        st
    };
    let (sa, sb) = (strides(a), strides(b));
    let count: usize = out[..r].iter().product();
    (0..count)
        .map(|mut idx| {
            let (mut oa, mut ob) = (0, 0);
            for i in (0..r).rev() {
                let c = idx % out[i];
                idx /= out[i];
                oa += c * sa[i];
                ob += c * sb[i];
            }
            (oa, ob)
        })
        .collect()
}

impl Kernel for Matmul {
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (a, b, out) = (e.input(0), e.input(1), e.output(0));
        e.node("MatMul", &[&a, &b], &[&out], vec![]);
        Ok(())
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let (a, b) = (inputs[0], inputs[1]);
        let dims = super::out_dims(self, inputs)?.remove(0);
        let r = dims.len();
        let (m, n, k) = (dims[r - 2], dims[r - 1], a.shape[a.shape.len() - 1]);
        let offsets = operand_offsets(&a.shape, &b.shape, &dims);
        let mut out = ctx.output(&dims);
        if m * n == 0 {
            return Ok(vec![out]);
        }
        let macs: u64 = out
            .data
            .par_chunks_mut(m * n)
            .zip(offsets.par_iter())
            .map(|(dst, &(oa, ob))| {
                kernels::matmul(
                    m,
                    n,
                    k,
                    &a.data[oa..oa + m * k],
                    k,
                    1,
                    &b.data[ob..ob + k * n],
                    n,
                    1,
                    dst,
                    false,
                )
            })
            .sum();
        ctx.macs += macs;
        Ok(vec![out])
    }
}

impl Counting for Matmul {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let macs = self.cost(inputs, outputs)?.macs;
        match c {
            // FlopCounterMode counts aten::bmm / aten::mm (matmul decomposes to them): the MACs.
            Convention::Torchvision => Ok(macs),
            // ptflops patches torch.matmul, Tensor.matmul and torch.bmm, not the `@` operator.
            Convention::Ptflops if self.operator => Ok(0),
            // fvcore's matmul/bmm handles and ptflops' patch: numel(input 0) · n, which misses
            // a batch that only input 1 carries (measured: scripts/tensor_ops_reference.py).
            Convention::Fvcore | Convention::Ptflops => {
                let (a, b) = (&inputs[0], &inputs[1]);
                mul(&[a.numel()?, b.0[b.rank() - 1]])
            }
            // Hook-based tools see modules, not a functional product.
            Convention::Thop | Convention::Torchinfo => Ok(0),
        }
    }
    fn forward_cublas(&self) -> bool {
        true
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // Each operand's gradient is a product of the output gradient with the other operand:
        // the forward MACs each. Both operands are saved.
        let c = self.cost(inputs, outputs)?;
        Ok(Training {
            forward_flops: c.flops,
            backward_flops: if input_grad { mul(&[2, c.flops])? } else { 0 },
            saved: Saved {
                inputs: vec![0, 1],
                ..Default::default()
            },
            cublas: true,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;
    use crate::layers::Shape;

    #[test]
    fn attention_products_by_hand() {
        // ViT-B/16 Q·Kᵀ per block: 12 heads of 197×64 · 64×197 = 12·197²·64 MACs.
        let (l, o) = build("matmul", "{}", &[&[1, 12, 197, 64], &[1, 12, 64, 197]]).unwrap();
        assert_eq!(o[0].0, vec![1, 12, 197, 197]);
        let ins = [Shape(vec![1, 12, 197, 64]), Shape(vec![1, 12, 64, 197])];
        assert_eq!(l.cost(&ins, &o).unwrap().macs, 12 * 197 * 197 * 64);
        // A rank-2 weight broadcast over the batch.
        let (_, o) = build("matmul", "{}", &[&[4, 10, 8], &[8, 3]]).unwrap();
        assert_eq!(o[0].0, vec![4, 10, 3]);
        let e = build("matmul", "{}", &[&[1, 12, 197, 64], &[1, 12, 197, 64]]).unwrap_err();
        assert!(e.message.starts_with("matmul inner sizes differ"), "{e}");
        assert!(e.help.unwrap().contains("transpose"));
    }
}
