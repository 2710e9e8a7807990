//! Reductions over channels: `magnitude`, the Euclidean norm across channels
//! (sqrt(Σ_c x_c²), e.g. the gradient magnitude sqrt(Gx² + Gy²) after a Sobel filter).

use super::{
    add, per_element, Arity, Attrs, Category, Collapsed, Cost, Counting, Kernel, Layer, Op, OpType,
    Shape,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::Tensor;

pub const MAGNITUDE: OpType = OpType {
    name: "magnitude",
    aliases: &["channel_norm"],
    keys: &[],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_magnitude,
    summary: "sqrt of the sum of squares over the channels, keeping a channel of 1 (torch.linalg.vector_norm(x, dim=1, keepdim=True))",
};

#[derive(Debug)]
struct Magnitude;

fn build_magnitude(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    if a.input().rank() < 2 {
        return Err(Diagnostic::new(format!(
            "magnitude needs a channel dimension, got {}",
            a.input()
        )));
    }
    Ok(Box::new(Magnitude))
}

impl Op for Magnitude {
    fn op(&self) -> &'static str {
        "magnitude"
    }
    fn label(&self) -> String {
        "magnitude over channels".into()
    }
    fn category(&self) -> Category {
        Category::Merge
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut s = inputs[0].clone();
        s.0[1] = 1;
        Ok(vec![s])
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        // A square and an add per input element, a square root per output element.
        Ok(Cost {
            macs: 0,
            flops: add(&[per_element(&inputs[0], 2)?, per_element(&outputs[0], 1)?])?,
        })
    }
}

impl Kernel for Magnitude {
    /// `ReduceSumSquare` over the channels, then `Sqrt`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let sq = super::onnx::reduce(e, "ReduceSumSquare", &x, &[1], true);
        e.node("Sqrt", &[&sq], &[&out], vec![]);
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // A reduction over channels, which the one-channel copy does not have.
        Collapsed::Identity
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let (n, c) = (x.shape[0], x.shape[1]);
        let plane: usize = x.shape[2..].iter().product();
        let mut shape = x.shape.clone();
        shape[1] = 1;
        let mut out = vec![0.0f32; n * plane];
        for b in 0..n {
            for ch in 0..c {
                let src = &x.data[(b * c + ch) * plane..(b * c + ch + 1) * plane];
                for (o, v) in out[b * plane..(b + 1) * plane].iter_mut().zip(src) {
                    *o += v * v;
                }
            }
        }
        out.iter_mut().for_each(|v| *v = v.sqrt());
        Ok(vec![Tensor::new(shape, out)])
    }
}

impl Counting for Magnitude {}

#[cfg(test)]
mod tests {
    use crate::layers::testutil::build;

    #[test]
    fn shape_and_cost() {
        let (l, o) = build("magnitude", "{}", &[&[1, 2, 8, 8]]).unwrap();
        assert_eq!(o[0].0, vec![1, 1, 8, 8]);
        assert_eq!(
            l.cost(&[crate::layers::Shape(vec![1, 2, 8, 8])], &o)
                .unwrap()
                .flops,
            2 * 128 + 64
        );
    }
}
