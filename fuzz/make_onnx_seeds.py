"""Writes fuzz/seeds/onnx/*.onnx: small hand-built ONNX files whose constant sub-graphs the
reader folds with src/onnx/fold.rs (docs/FUZZING.md), as seeds for the `onnx` fuzz target
beside the committed tests/data/onnx/ files. Each reads (`archscope summary FILE`); the fuzzer
mutates them from there.

- fold_shape.onnx: shape arithmetic on a data tensor (Shape, Gather, Mul, Div, Sub, Cast,
  Unsqueeze, Concat, Slice) feeding a Reshape;
- fold_mask.onnx: a shifted-window-style mask (ConstantOfShape, ScatterND, Range, Expand,
  Equal, Not, Where, Sub, Unsqueeze, Transpose) added to attention-like scores before a
  Softmax;
- fold_matmul.onnx: constant tensors (Range, Reshape, MatMul, Transpose, Pad, Softmax,
  ReduceSum, ReduceMean, ReduceMax, Tile, Slice, Concat, Pow, Sqrt, Neg, Abs, Clip)
  folded into one constant a Conv's output is multiplied by.

Run with the Python that has `onnx` (only to regenerate the seeds; nothing builds from it):
    /tmp/torchenv/bin/python fuzz/make_onnx_seeds.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "onnx")


def const(name, arr):
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name)
    )


def save(name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, name + ".onnx"))


def fold_shape():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 36])
    nodes = [
        const("i0", np.array(0, np.int64)),
        const("i1", np.array(1, np.int64)),
        const("two", np.array(2, np.int64)),
        const("axes0", np.array([0], np.int64)),
        const("s2", np.array([2], np.int64)),
        const("e4", np.array([4], np.int64)),
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
        helper.make_node("Gather", ["sh", "i1"], ["c"], axis=0),
        helper.make_node("Slice", ["sh", "s2", "e4"], ["hw2"]),
        helper.make_node("Gather", ["hw2", "i0"], ["h"], axis=0),
        helper.make_node("Gather", ["hw2", "i1"], ["w"], axis=0),
        helper.make_node("Mul", ["h", "w"], ["hw"]),
        # c * 2 / 2 - 0: integer arithmetic that truncates as ONNX's does.
        helper.make_node("Mul", ["c", "two"], ["c2"]),
        helper.make_node("Div", ["c2", "two"], ["c1"]),
        helper.make_node("Sub", ["c1", "i0"], ["c0"]),
        helper.make_node("Cast", ["c0"], ["cc"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["nu"]),
        helper.make_node("Unsqueeze", ["cc", "axes0"], ["cu"]),
        helper.make_node("Unsqueeze", ["hw", "axes0"], ["hu"]),
        helper.make_node("Concat", ["nu", "cu", "hu"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    save("fold_shape", nodes, [x], [y])


def fold_mask():
    # Scores of one head over 4 tokens (1×1×4×4), plus a mask built at run time from shapes
    # as torch.onnx.export writes Swin's shifted-window mask.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    nodes = [
        const("shape", np.array([4], np.int64)),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["zeros"],
            value=numpy_helper.from_array(np.array([0], np.int64)),
        ),
        const("idx", np.array([[2], [3]], np.int64)),
        const("upd", np.array([1, 1], np.int64)),
        helper.make_node("ScatterND", ["zeros", "idx", "upd"], ["region"]),
        const("ax1", np.array([1], np.int64)),
        const("ax0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["region", "ax1"], ["col"]),
        helper.make_node("Unsqueeze", ["region", "ax0"], ["row"]),
        helper.make_node("Sub", ["col", "row"], ["diff"]),
        const("z", np.array(0, np.int64)),
        helper.make_node("Equal", ["diff", "z"], ["same"]),
        helper.make_node("Not", ["same"], ["other"]),
        const("neg", np.array(-100.0, np.float32)),
        const("zero", np.array(0.0, np.float32)),
        helper.make_node("Where", ["other", "neg", "zero"], ["m2"]),
        const("r0", np.array(0, np.int64)),
        const("r4", np.array(4, np.int64)),
        const("r1", np.array(1, np.int64)),
        helper.make_node("Range", ["r0", "r4", "r1"], ["ar"]),
        const("ex", np.array([4, 4], np.int64)),
        helper.make_node("Expand", ["ar", "ex"], ["grid"]),
        helper.make_node("Transpose", ["grid"], ["gridt"], perm=[1, 0]),
        helper.make_node("Less", ["gridt", "grid"], ["upper"]),
        helper.make_node("Cast", ["upper"], ["upf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["upf", "zero"], ["nothing"]),
        helper.make_node("Add", ["m2", "nothing"], ["m3"]),
        const("ax01", np.array([0, 1], np.int64)),
        helper.make_node("Unsqueeze", ["m3", "ax01"], ["mask"]),
        helper.make_node("Add", ["x", "mask"], ["s"]),
        helper.make_node("Softmax", ["s"], ["y"], axis=-1),
    ]
    save("fold_mask", nodes, [x], [y])


def fold_matmul():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = numpy_helper.from_array(
        (np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3) % 7 - 3) / 10, "w"
    )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        const("f0", np.array(0.0, np.float32)),
        const("f16", np.array(16.0, np.float32)),
        const("f1", np.array(1.0, np.float32)),
        helper.make_node("Range", ["f0", "f16", "f1"], ["ar"]),
        const("s44", np.array([4, 4], np.int64)),
        helper.make_node("Reshape", ["ar", "s44"], ["a"]),
        helper.make_node("Transpose", ["a"], ["at"], perm=[1, 0]),
        helper.make_node("MatMul", ["a", "at"], ["aa"]),
        helper.make_node("Softmax", ["aa"], ["p"], axis=-1),
        const("pads", np.array([0, 0, 0, 0], np.int64)),
        helper.make_node("Pad", ["p", "pads"], ["pp"], mode="constant"),
        const("ax1", np.array([1], np.int64)),
        helper.make_node("ReduceSum", ["pp", "ax1"], ["rs"], keepdims=1),
        helper.make_node("ReduceMax", ["pp"], ["rm"], axes=[1], keepdims=1),
        helper.make_node("ReduceMean", ["pp"], ["rmean"], axes=[1], keepdims=1),
        helper.make_node("Add", ["rs", "rm"], ["r1"]),
        helper.make_node("Sub", ["r1", "rmean"], ["r2"]),
        const("half", np.array(0.5, np.float32)),
        helper.make_node("Pow", ["r2", "half"], ["r3"]),
        helper.make_node("Sqrt", ["r3"], ["r4"]),
        helper.make_node("Neg", ["r4"], ["r5"]),
        helper.make_node("Abs", ["r5"], ["r6"]),
        helper.make_node("Clip", ["r6", "f0", "f16"], ["r7"]),
        const("s0", np.array([0], np.int64)),
        const("s2", np.array([2], np.int64)),
        const("s4", np.array([4], np.int64)),
        helper.make_node("Slice", ["r7", "s0", "s2", "s0"], ["sa"]),
        helper.make_node("Slice", ["r7", "s2", "s4", "s0"], ["sb"]),
        helper.make_node("Concat", ["sb", "sa"], ["sc"], axis=0),
        const("rep", np.array([1, 1], np.int64)),
        helper.make_node("Tile", ["sc", "rep"], ["t"]),
        const("to", np.array([4, 1, 1], np.int64)),
        helper.make_node("Reshape", ["t", "to"], ["gain"]),
        helper.make_node("Mul", ["c", "gain"], ["y"]),
    ]
    save("fold_matmul", nodes, [x], [y], [w])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    fold_shape()
    fold_mask()
    fold_matmul()
