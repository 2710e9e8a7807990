//! The ONNX reader's constant folding on hand-built graphs, each value derived by hand beside
//! its assertion: broadcasting between constants of different shapes (a column against a row,
//! a `Where` whose branches broadcast over its condition) and a `Slice` with a step, the three
//! cases its fast rules computed wrongly (found while seeding the `onnx` fuzz target with
//! `fuzz/seeds/onnx/fold_mask.onnx`: the shifted-window-style mask folded to zeros).

use archscope::onnx::proto::{
    self, tensor_shape_proto::dimension, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use archscope::{exec, onnx, BuildOptions, Network};

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(proto::dtype::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| proto::tensor_shape_proto::Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: Some(output.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// A `Constant` node holding `t`.
fn constant(t: proto::TensorProto) -> NodeProto {
    let name = t.name.clone().unwrap_or_default();
    let mut n = node("Constant", &[], &name);
    n.attribute = vec![AttributeProto {
        name: Some("value".into()),
        t: Some(t),
        r#type: Some(proto::attribute_proto::AttributeType::Tensor as i32),
        ..Default::default()
    }];
    n
}

/// The graph input `x` of shape `x`, `nodes`, the output `y` (its shape left to the reader).
fn model(x: &[i64], nodes: Vec<NodeProto>) -> Vec<u8> {
    proto::encode_model(&ModelProto {
        ir_version: Some(proto::IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("fold".into()),
            node: nodes,
            input: vec![value("x", x)],
            output: vec![ValueInfoProto {
                name: Some("y".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The network read from `bytes`, run on an input of zeros: its one output (shape, values).
fn output_on_zeros(name: &str, bytes: &[u8]) -> (Vec<usize>, Vec<f32>) {
    let (net, imp): (Network, _) = onnx::build(name, bytes, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let w = match onnx::weights(&net, &imp).unwrap() {
        Some(w) => w,
        None => exec::init_weights(&net, 0).unwrap(),
    };
    let mut x = exec::random_input(&net, 0).unwrap();
    x[0].data.iter_mut().for_each(|v| *v = 0.0);
    let mut r = exec::run(&net, &w, &x, None).unwrap();
    let o = r.outputs.remove(0);
    (o.shape, o.data)
}

#[test]
fn a_column_minus_a_row_broadcasts_to_a_square() {
    // col (4×1) = [0, 0, 1, 1]ᵀ, row (1×4) = [0, 0, 1, 1]: Sub broadcasts to 4×4,
    // d[i][j] = col[i] − row[j]. Both hold four values, and the fast rule paired them element
    // by element (0 everywhere) in a 4×1 tensor.
    let bytes = model(
        &[1, 1, 4, 4],
        vec![
            constant(proto::tensor_f32("col", &[4, 1], &[0., 0., 1., 1.])),
            constant(proto::tensor_f32("row", &[1, 4], &[0., 0., 1., 1.])),
            node("Sub", &["col", "row"], "d"),
            node("Add", &["x", "d"], "y"),
        ],
    );
    let (shape, got) = output_on_zeros("column_row.onnx", &bytes);
    assert_eq!(shape, vec![1, 1, 4, 4]);
    #[rustfmt::skip]
    let want = [
        0., 0., -1., -1.,
        0., 0., -1., -1.,
        1., 1., 0., 0.,
        1., 1., 0., 0.,
    ];
    assert_eq!(got, want);
}

#[test]
fn where_branches_broadcast_over_the_condition() {
    // The condition is Equal(col, row) with col = [0, 0, 1, 1]ᵀ (4×1) and row = [0, 0, 1, 1]
    // (1×4): true where i and j are in the same half. The true branch is a row (1×4,
    // [10, 20, 30, 40]: the value of column j), the false branch −100 (a scalar): as a
    // shifted-window mask is made. The fast rule read the row's values past its four as NaN.
    let bytes = model(
        &[1, 1, 4, 4],
        vec![
            constant(proto::tensor_i64("col", &[4, 1], &[0, 0, 1, 1])),
            constant(proto::tensor_i64("row", &[1, 4], &[0, 0, 1, 1])),
            node("Equal", &["col", "row"], "same"),
            constant(proto::tensor_f32("a", &[1, 4], &[10., 20., 30., 40.])),
            constant(proto::tensor_f32("b", &[], &[-100.])),
            node("Where", &["same", "a", "b"], "m"),
            node("Add", &["x", "m"], "y"),
        ],
    );
    let (shape, got) = output_on_zeros("where_broadcast.onnx", &bytes);
    assert_eq!(shape, vec![1, 1, 4, 4]);
    #[rustfmt::skip]
    let want = [
        10., 20., -100., -100.,
        10., 20., -100., -100.,
        -100., -100., 30., 40.,
        -100., -100., 30., 40.,
    ];
    assert_eq!(got, want);
}

#[test]
fn a_slice_of_a_shape_with_a_step() {
    // x: 1×2×3×4 (24 elements). Shape(x)[0:4:2] = [1, 3]; with 8 appended, Reshape(x) to
    // [1, 3, 8] (24 elements: one sample of 3×8). The step was ignored ([1, 2, 3, 4, 8]: a
    // reshape of 24 elements to 192, refused).
    let bytes = model(
        &[1, 2, 3, 4],
        vec![
            node("Shape", &["x"], "s"),
            constant(proto::tensor_i64("starts", &[1], &[0])),
            constant(proto::tensor_i64("ends", &[1], &[4])),
            constant(proto::tensor_i64("axes", &[1], &[0])),
            constant(proto::tensor_i64("steps", &[1], &[2])),
            node(
                "Slice",
                &["s", "starts", "ends", "axes", "steps"],
                "every_other",
            ),
            constant(proto::tensor_i64("eight", &[1], &[8])),
            {
                let mut c = node("Concat", &["every_other", "eight"], "to");
                c.attribute = vec![AttributeProto {
                    name: Some("axis".into()),
                    i: Some(0),
                    r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
                    ..Default::default()
                }];
                c
            },
            node("Reshape", &["x", "to"], "y"),
        ],
    );
    let (shape, got) = output_on_zeros("slice_step.onnx", &bytes);
    assert_eq!(shape, vec![1, 3, 8]);
    assert_eq!(got, vec![0.0; 24]);
}
