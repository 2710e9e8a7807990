"""Writes tests/data/onnx/const_*.onnx and tests/data/onnx_const.json for tests/onnx_const.rs
(run with /tmp/torchenv/bin/python, which has torch, onnx and onnxruntime; with
`PYTHONPATH=/tmp/thop011` for thop 0.1.1, which the env's ultralytics-thop shadows).

Tiny models with arithmetic on constant and learned tensors, each exported with both of
torch.onnx.export's exporters (TorchScript: dynamo=False, opset 17; dynamo: dynamo=True, its
default opset, weights inside the file):
- `norm`: a normalisation wrapper `(x − mean) / std` with 1×3×1×1 plain tensor attributes
  around a small conv net (conv, ReLU, conv);
- `norm_buffer`: the same with `register_buffer('mean', …)` and `std`;
- `channel`: a per-channel scale and shift (plain 1×4×1×1 tensors), a per-channel exponent
  (`x ** e`, e of 4×1×1), `c / x` and `c − x` by tensors, after a convolution;
- `gain`: a learned scalar gain `nn.Parameter(torch.ones(1) * 1.5)`, a rank-0 learned offset,
  a learned per-channel divisor read by two nodes (`y / s − s`) and a constant number.

What the exporters write for each (measured here, recorded under `initializers` and `nodes`):
TorchScript writes a plain tensor attribute and a number as `Constant` nodes, parameters and
registered buffers alike as initializers under their state_dict names; dynamo writes every one
as an initializer and declares its kind in the value_info metadata
(`pkg.torch.export.graph_signature.InputSpec.kind`: PARAMETER, BUFFER, CONSTANT_TENSOR), numbers
undeclared (`val_N`, `scalar_tensor_default`).

The JSON holds, per model: PyTorch's parameter and buffer counts, what each profiler charges
(FlopCounterMode's FLOPs / 2 as torchvision's MACs, fvcore, ptflops, thop, torchinfo), and per
exporter the file, its initializers (name, dims, declared kind) and operators, and
onnxruntime's output on the fixed input x[i] = sin(0.1 i).
"""
import contextlib
import io
import json
import math
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_arith import conventions  # noqa: E402  (each profiler's total, shared)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")
KIND = "pkg.torch.export.graph_signature.InputSpec.kind"


def net():
    # No batch norm: both exporters fold it into the convolution in eval mode, and its
    # parameters and buffers would leave the file.
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))


class Norm(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = net()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


class NormBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = net()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


class Channel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.scale = torch.tensor([0.5, 1.0, 1.5, 2.0]).reshape(1, 4, 1, 1)
        self.shift = torch.tensor([0.1, -0.2, 0.3, -0.4]).reshape(1, 4, 1, 1)
        self.expo = torch.tensor([2.0, 3.0, 1.0, 2.0]).reshape(4, 1, 1)
        self.num = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)

    def forward(self, x):
        y = self.conv(x) * self.scale + self.shift
        a = y ** self.expo
        b = self.num / (y * y + 1)
        c = self.num - y
        return torch.cat([a, b, c], 1)


class Gain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gain = nn.Parameter(torch.ones(1) * 1.5)
        self.offset = nn.Parameter(torch.tensor(0.25))
        self.s = nn.Parameter(torch.tensor([0.5, 1.0, 2.0, 4.0]).reshape(1, 4, 1, 1))

    def forward(self, x):
        y = self.conv(x) * self.gain - self.offset
        return y / self.s - self.s + 0.5


MODELS = {"norm": Norm, "norm_buffer": NormBuffer, "channel": Channel, "gain": Gain}


def export(m, x, path, dynamo):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(m, (x,), path, dynamo=True, external_data=False,
                              input_names=["image"], output_names=["out"])
        else:
            torch.onnx.export(m, (x,), path, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["out"])
    model = onnx.load(path)
    onnx.checker.check_model(model)
    g = model.graph
    kinds = {}
    for v in list(g.value_info) + list(g.input):
        for p in v.metadata_props:
            if p.key == KIND:
                kinds[v.name] = p.value
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": x.numpy()})
    return {
        "file": os.path.basename(path),
        "bytes": os.path.getsize(path),
        "initializers": [{"name": t.name, "dims": list(t.dims), "kind": kinds.get(t.name)}
                         for t in g.initializer],
        "nodes": [n.op_type for n in g.node],
        "output_shape": list(y.shape),
        "onnxruntime_output": [float(v) for v in y.reshape(-1)],
    }


def main():
    shape = [1, 3, 8, 8]
    n = int(np.prod(shape))
    x = torch.tensor([math.sin(0.1 * i) for i in range(n)], dtype=torch.float32).reshape(shape)
    out = {
        "produced_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                          "onnxruntime": ort.__version__},
        "input": "x[i] = sin(0.1 * i) over the flattened 1x3x8x8 input",
        "input_shape": shape,
        "models": {},
    }
    for name, cls in MODELS.items():
        torch.manual_seed(0)
        m = cls().eval()
        with torch.no_grad():
            yt = m(x).numpy()
        rec = {
            "params": sum(p.numel() for p in m.parameters()),
            "buffers": sum(b.numel() for b in m.buffers()),
            "conventions": conventions(m, x),
            "exports": {},
        }
        for exporter, dyn in [("torchscript", False), ("dynamo", True)]:
            path = os.path.join(OUT, f"const_{name}_{exporter}.onnx")
            e = export(m, x, path, dyn)
            assert e["bytes"] < 50_000, e["bytes"]
            y = np.array(e["onnxruntime_output"]).reshape(yt.shape)
            e["torch_max_abs_diff"] = float(np.abs(y - yt).max())
            rec["exports"][exporter] = e
            print(name, exporter, e["bytes"], "bytes", e["nodes"],
                  [(i["name"], i["dims"], i["kind"]) for i in e["initializers"] if i["name"].find("net.") < 0])
        print(name, "params", rec["params"], "buffers", rec["buffers"], rec["conventions"])
        out["models"][name] = rec
    with open(os.path.join(ROOT, "tests", "data", "onnx_const.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
