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
3. `archscope convert` inputs (tests/onnx_convert.rs), with weights: a small ResNet of
   torchvision's own BasicBlocks (two stages of two blocks, the second stage's first block
   with stride 2 and a downsampling shortcut) exported three ways —
   tests/data/onnx/tiny_resnet.onnx with training=PRESERVE (BatchNormalization nodes kept),
   tiny_resnet_eval.onnx in plain eval mode (torch.onnx folds each batch norm into the
   convolution before it), tiny_resnet_nofold.onnx in eval mode with do_constant_folding=False
   (batch norms kept) — and onnxruntime's output of each on the fixed input.
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


class TinyResNet(nn.Module):
    """A ResNet of torchvision's BasicBlocks: 8 channels, then 16 at stride 2."""

    def __init__(self):
        super().__init__()
        from torchvision.models.resnet import BasicBlock
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2, downsample=down), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomise_bn(model):
    """Non-trivial batch-norm statistics and affine values, so that `run` must read them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def convert_inputs(ref):
    torch.manual_seed(1)
    model = TinyResNet().eval()
    randomise_bn(model)
    xi = torch.tensor([math.sin(0.1 * i) for i in range(2 * 3 * 16 * 16)], dtype=torch.float32).reshape(2, 3, 16, 16)
    with torch.no_grad():
        yt = model(xi).numpy()
    for suffix, kw in [
        ("", {"training": torch.onnx.TrainingMode.PRESERVE}),
        ("_eval", {}),
        ("_nofold", {"do_constant_folding": False}),
    ]:
        path = os.path.join(OUT, f"tiny_resnet{suffix}.onnx")
        torch.onnx.export(
            model, (xi,), path, dynamo=False, opset_version=17, export_params=True,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, **kw,
        )
        assert os.path.getsize(path) < 200_000
        g = onnx.load(path).graph
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"image": xi.numpy()})
        ref[f"tiny_resnet{suffix}"] = {
            "input": "x[i] = sin(0.1 * i) over the flattened 2x3x16x16 input",
            "input_shape": [2, 3, 16, 16],
            "batchnorm_nodes": sum(n.op_type == "BatchNormalization" for n in g.node),
            "output_shape": list(y.shape),
            "onnxruntime_output": [float(v) for v in y.reshape(-1)],
            "torch_max_abs_diff": float(np.abs(y - yt).max()),
            "params": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")),
        }


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
    convert_inputs(ref)
    with open(os.path.join(ROOT, "tests", "data", "onnx_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
