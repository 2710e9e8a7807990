"""Writes the ONNX reader's test inputs and reference data (run with /tmp/torchenv/bin/python,
which needs onnx and onnxruntime: pip install onnx onnxruntime onnxscript).

1. Graph-only exports (export_params=False: every weight a graph input with its shape, so each
   file stays under 200 KB) of torchvision's resnet18, mobilenet_v2, efficientnet_b0, googlenet
   and convnext_tiny, with torch.onnx.export's TorchScript exporter (dynamo=False), opset 17,
   training=PRESERVE (batch norms kept as BatchNormalization nodes, as the module has them),
   batch dimension symbolic. Their figures are compared by tests/onnx_import.rs with
   tests/data/torchvision_zoo.json (PyTorch's own counts, scripts/torch_reference.py).
   The same models exported WITH weights give the same figures (checked by hand: too large to
   commit).
2. tests/data/onnx/tiny_cnn.onnx: a small CNN with its weights (Conv+BN+ReLU, MaxPool, grouped
   Conv+SiLU, nearest Resize, Concat, AvgPool, GELU, GlobalAveragePool, Flatten, Linear), and
   tests/data/onnx_reference.json: a fixed input and onnxruntime's output on it, plus PyTorch's
   parameter and buffer counts of the tiny model.
"""
import json
import math
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")
MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "googlenet", "convnext_tiny"]


def export(model, x, path, params):
    torch.onnx.export(
        model, (x,), path, dynamo=False, opset_version=17,
        training=torch.onnx.TrainingMode.PRESERVE, export_params=params,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    size = os.path.getsize(path)
    assert size < 200_000 or not path.startswith(OUT), f"{path} is {size} bytes"
    return size


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.act2 = nn.SiLU()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.avg = nn.AvgPool2d(2)
        self.conv3 = nn.Conv2d(16, 12, 1)
        self.gelu = nn.GELU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        a = self.pool(x)
        b = self.act2(self.conv2(a))
        c = torch.cat([self.up(b), x], dim=1)
        c = self.gelu(self.conv3(self.avg(c)))
        return self.fc(torch.flatten(self.gap(c), 1))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    for name in MODELS:
        m = getattr(torchvision.models, name)(weights=None, **({"aux_logits": False, "init_weights": False} if name == "googlenet" else {})).eval()
        size = export(m, x, os.path.join(OUT, f"{name}_graph.onnx"), False)
        print(name, size, "bytes", file=sys.stderr)

    tiny = Tiny().eval()
    with torch.no_grad():
        # Non-trivial batch-norm statistics, so that `run` must read them.
        tiny.bn1.running_mean.uniform_(-0.5, 0.5)
        tiny.bn1.running_var.uniform_(0.5, 2.0)
        tiny.bn1.weight.uniform_(0.5, 1.5)
        tiny.bn1.bias.uniform_(-0.2, 0.2)
    xi = torch.tensor([math.sin(0.1 * i) for i in range(2 * 3 * 16 * 16)], dtype=torch.float32).reshape(2, 3, 16, 16)
    path = os.path.join(OUT, "tiny_cnn.onnx")
    export(tiny, xi, path, True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": xi.numpy()})
    with torch.no_grad():
        yt = tiny(xi).numpy()
    ref = {
        "produced_with": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "tiny_cnn": {
            "input": "x[i] = sin(0.1 * i) over the flattened 2x3x16x16 input",
            "input_shape": [2, 3, 16, 16],
            "output_shape": list(y.shape),
            "onnxruntime_output": [float(v) for v in y.reshape(-1)],
            "torch_max_abs_diff": float(np.abs(y - yt).max()),
            "params": sum(p.numel() for p in tiny.parameters()),
            "buffers": sum(b.numel() for n, b in tiny.named_buffers() if not n.endswith("num_batches_tracked")),
        },
    }
    with open(os.path.join(ROOT, "tests", "data", "onnx_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
