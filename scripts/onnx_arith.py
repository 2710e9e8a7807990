"""Writes tests/data/onnx/arith.onnx and tests/data/onnx_arith.json for tests/onnx_arith.rs
(run with /tmp/torchenv/bin/python, which has torch, onnx and onnxruntime).

A tiny model with its weights: a convolution, then arithmetic with constant numbers
(`x * 0.5 + 1`, `x / 3 - 2`, `2 - x`, `1 / (x*x + 1)`, `x ** 2`), exported with
torch.onnx.export's TorchScript exporter (dynamo=False, opset 17): each becomes an ONNX
Add/Sub/Mul/Div/Pow with a one-number constant. The JSON holds the fixed input, onnxruntime's
output on it, PyTorch's parameter count, the ONNX operators and the per-node output shapes
(from onnx's shape inference), and what each profiler charges the model at batch 1 (under
`conventions`: FlopCounterMode's FLOPs / 2 as torchvision's MACs, fvcore, ptflops, thop,
torchinfo): the arithmetic is charged by none, so each equals its charge for the convolution.
Run with `PYTHONPATH=/tmp/thop011` (thop 0.1.1; the env's ultralytics-thop shadows it).
"""
import json
import math
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")


class Arith(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        a = x * 0.5 + 1
        b = x / 3 - 2
        c = 2 - x
        d = 1 / (x * x + 1)
        e = x ** 2
        return torch.cat([a, b, c, d, e], 1)


def conventions(m, x):
    import contextlib
    import copy
    import io
    import warnings

    import ptflops
    import thop
    import torchinfo
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    r = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = FlopCountAnalysis(copy.deepcopy(m), (x,))
        a.unsupported_ops_warnings(False)
        r["fvcore"] = int(a.total())
        r["ptflops"] = int(ptflops.get_model_complexity_info(
            copy.deepcopy(m), tuple(x.shape[1:]), as_strings=False,
            print_per_layer_stat=False, backend="pytorch")[0])
        r["thop"] = int(thop.profile(copy.deepcopy(m), inputs=(x,), verbose=False)[0])
        r["torchinfo"] = int(torchinfo.summary(copy.deepcopy(m), input_data=[x], verbose=0).total_mult_adds)
        with FlopCounterMode(display=False) as fc:
            copy.deepcopy(m)(x)
        r["torchvision"] = int(fc.get_total_flops()) // 2
    return r


def main():
    torch.manual_seed(0)
    m = Arith().eval()
    shape = [1, 3, 8, 8]
    n = int(np.prod(shape))
    xi = torch.tensor([math.sin(0.1 * i) for i in range(n)], dtype=torch.float32).reshape(shape)
    path = os.path.join(OUT, "arith.onnx")
    torch.onnx.export(m, (xi,), path, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["out"])
    size = os.path.getsize(path)
    assert size < 50_000, size
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(model.graph.value_info) + list(model.graph.output)}
    nodes = [{"op": nd.op_type, "name": nd.name, "shape": shapes.get(nd.output[0])}
             for nd in model.graph.node if nd.op_type != "Constant"]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": xi.numpy()})
    with torch.no_grad():
        yt = m(xi).numpy()
    ref = {
        "produced_with": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "input": "x[i] = sin(0.1 * i) over the flattened 1x3x8x8 input",
        "input_shape": shape,
        "output_shape": list(y.shape),
        "onnxruntime_output": [float(v) for v in y.reshape(-1)],
        "torch_max_abs_diff": float(np.abs(y - yt).max()),
        "params": sum(p.numel() for p in m.parameters()),
        "nodes": nodes,
        "conventions": conventions(m, xi),
    }
    with open(os.path.join(ROOT, "tests", "data", "onnx_arith.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(size, "bytes;", [nd["op"] for nd in nodes])


if __name__ == "__main__":
    main()
