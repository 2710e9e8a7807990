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
import os
import sys

import torch
import torch.nn as nn
import torchvision
from torchvision.models.googlenet import BasicConv2d, Inception

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_convert_reference import randomise_norms, sine_input, weighted_reference, write_json  # noqa: E402
from onnx_reference import OUT, export  # noqa: E402


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
    randomise_norms(model)
    xi = sine_input([2, 3, 16, 16])
    path = os.path.join(OUT, "tiny_inception.onnx")
    size = export(model, xi, path, True)
    write_json(weighted_reference("tiny_inception", model, xi, path), "onnx_convert_named.json")
    print(path, size, "bytes")


if __name__ == "__main__":
    main()
