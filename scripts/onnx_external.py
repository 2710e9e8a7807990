"""Writes tests/data/onnx_external/: a small CNN exported by `torch.onnx.export(...,
dynamo=True)` as torch 2.x writes it by default, its weights as ONNX external data in
`tiny_dynamo.onnx.data` beside the model (and the same export with `optimize=False`,
`tiny_dynamo_unoptimized.onnx`, whose graph keeps `CastLike`), plus tests/data/onnx_external/reference.json:
PyTorch's parameter and buffer counts, FlopCounterMode's MACs, a fixed input and
onnxruntime's output on it (read by tests/onnx_external.rs).

    /tmp/torchenv/bin/python scripts/onnx_external.py
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx_external")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = x.mean(dim=(2, 3))
        return self.fc(self.norm(x))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    m = Tiny().eval()
    x = torch.randn(1, 3, 16, 16)
    path = os.path.join(OUT, "tiny_dynamo.onnx")
    for f in (path, path + ".data"):
        if os.path.exists(f):
            os.remove(f)
    torch.onnx.export(m, (x,), path, dynamo=True, input_names=["input"], output_names=["output"])
    # The same model with the exporter's optimisation off: its graph keeps the ops the
    # optimiser folds away (`CastLike` of constants like the input, `Expand`, …).
    raw = os.path.join(OUT, "tiny_dynamo_unoptimized.onnx")
    for f in (raw, raw + ".data"):
        if os.path.exists(f):
            os.remove(f)
    torch.onnx.export(
        m, (x,), raw, dynamo=True, optimize=False, input_names=["input"], output_names=["output"]
    )
    raw_ops = sorted({n.op_type for n in onnx.load(raw, load_external_data=False).graph.node})
    assert "CastLike" in raw_ops, raw_ops
    raw_ref = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )[0]
    model = onnx.load(path, load_external_data=False)
    external = [
        t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert external, "the exporter wrote no external data"
    onnx.checker.check_model(path)
    with torch.no_grad():
        fc = FlopCounterMode(display=False)
        with fc:
            y = m(x)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x.numpy()})[0]
    assert np.allclose(ref, y.numpy(), atol=1e-5)
    assert np.allclose(raw_ref, y.numpy(), atol=1e-5)
    doc = {
        "generator": "scripts/onnx_external.py",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "file": "tiny_dynamo.onnx",
        "data_file": "tiny_dynamo.onnx.data",
        "external_tensors": sorted(external),
        "unoptimized_file": "tiny_dynamo_unoptimized.onnx",
        "unoptimized_ops": raw_ops,
        "params": sum(p.numel() for p in m.parameters()),
        "buffers": 0,
        "macs": fc.get_total_flops() // 2,
        "input_shape": list(x.shape),
        "input": x.flatten().tolist(),
        "output_shape": list(ref.shape),
        "output": ref.flatten().tolist(),
    }
    with open(os.path.join(OUT, "reference.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print(doc["params"], doc["macs"], external)


if __name__ == "__main__":
    main()
