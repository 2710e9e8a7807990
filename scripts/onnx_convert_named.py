"""Writes `archscope convert`'s inputs with named modules (tests/onnx_convert_named.rs; run with
/tmp/torchenv/bin/python, which needs onnx and onnxruntime).

1. tests/data/onnx/inception_v3_graph.onnx: torchvision's inception_v3 (aux_logits=False,
   init_weights=False, as tests/data/torchvision_zoo.json builds it) at 299×299, graph only
   (export_params=False: every weight a graph input, so the file stays under 200 KB), with
   scripts/onnx_reference.py's export settings (TorchScript exporter, opset 17,
   training=PRESERVE, symbolic batch). Its modules `Mixed_5b` … `Mixed_7c` are named, not
   numbered: 5b–5d InceptionA, 6a InceptionB, 6b–6e InceptionC, 7a InceptionD, 7b–7c
   InceptionE. Its figures are PyTorch's in tests/data/torchvision_zoo.json.
2. tests/data/onnx/tiny_inception.onnx: a small network of torchvision's own GoogLeNet
   `Inception` modules named as GoogLeNet names them (`inception3a`, `inception3b`, a max pool,
   `inception4a`), a stem convolution and a linear head, with its weights (random batch-norm
   statistics), and tests/data/onnx_convert_named.json: a fixed input, onnxruntime's output on
   it, PyTorch's parameter and buffer counts and state-dict names.
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
from torchvision.models.googlenet import BasicConv2d, Inception

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_reference import OUT, ROOT, export  # noqa: E402


class TinyInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = BasicConv2d(3, 16, kernel_size=3, padding=1)
        # GoogLeNet's Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj).
        self.inception3a = Inception(16, 8, 8, 12, 4, 4, 4)      # 28 out
        self.inception3b = Inception(28, 12, 8, 16, 4, 8, 8)     # 44 out
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(44, 16, 8, 16, 4, 8, 8)     # 48 out
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def main():
    m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    path = os.path.join(OUT, "inception_v3_graph.onnx")
    size = export(m, torch.zeros(1, 3, 299, 299), path, False)
    print(path, size, "bytes")

    torch.manual_seed(5)
    model = TinyInception().eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    shape = [2, 3, 16, 16]
    n = int(np.prod(shape))
    xi = torch.tensor([math.sin(0.1 * i) for i in range(n)], dtype=torch.float32).reshape(shape)
    with torch.no_grad():
        yt = model(xi).numpy()
    path = os.path.join(OUT, "tiny_inception.onnx")
    size = export(model, xi, path, True)
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": xi.numpy()})
    ref = {
        "produced_with": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                          "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "tiny_inception": {
            "input": "x[i] = sin(0.1 * i) over the flattened 2x3x16x16 input",
            "input_shape": shape,
            "output_shape": list(y.shape),
            "onnxruntime_output": [float(v) for v in y.reshape(-1)],
            "torch_max_abs_diff": float(np.abs(y - yt).max()),
            "params": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for nm, b in model.named_buffers() if not nm.endswith("num_batches_tracked")),
            "state_dict": sorted(k for k in model.state_dict() if not k.endswith("num_batches_tracked")),
        },
    }
    with open(os.path.join(ROOT, "tests", "data", "onnx_convert_named.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(path, size, "bytes")


if __name__ == "__main__":
    main()
