"""Writes a tiny MobileNetV2 with its weights for `archscope convert` (tests/onnx_convert_blocks.rs;
run with /tmp/torchenv/bin/python, which needs onnx and onnxruntime).

torchvision's own MobileNetV2 class (so the module paths are torchvision's: `features.2.conv.0.0`,
`features.4.conv.1.0`, …) with a small `inverted_residual_setting` — t=1 c=8 n=1 s=1, t=6 c=8
n=2 s=2, t=6 c=16 n=3 s=2 — and 10 classes, on a 3×32×32 input: features.1 is the expansion-1
block, features.2–3 and features.4–6 two runs of inverted residuals that start after index 0,
features.7 the last 1×1 convolution (64 wide instead of torchvision's fixed 1280, so that
the file stays small). Exported with its weights (TorchScript exporter, opset 17,
training=PRESERVE: the batch norms stay BatchNormalization nodes, with random statistics) to
tests/data/onnx/tiny_mobilenet_v2.onnx (under 200 KB), and tests/data/onnx_convert_reference.json:
a fixed input, onnxruntime's output on it, and PyTorch's parameter and buffer counts.
"""
import json
import math
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision
from torchvision.ops.misc import Conv2dNormActivation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")


def randomise_norms(model):
    """Batch-norm statistics and affine parameters away from their identity defaults, so that
    folding them is visible in the outputs (shared with scripts/onnx_convert_named.py)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def sine_input(shape):
    """x[i] = sin(0.1 i) over the flattened tensor of `shape`."""
    n = int(np.prod(shape))
    return torch.tensor([math.sin(0.1 * i) for i in range(n)], dtype=torch.float32).reshape(shape)


def weighted_reference(key, model, xi, path):
    """What convert's tests read of a weighted file: onnxruntime's output on `xi` (input
    `image`), PyTorch's parameters, buffers and state-dict names; the file passes the checker."""
    with torch.no_grad():
        yt = model(xi).numpy()
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": xi.numpy()})
    shape = list(xi.shape)
    return {
        "produced_with": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                          "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        key: {
            "input": "x[i] = sin(0.1 * i) over the flattened " + "x".join(map(str, shape)) + " input",
            "input_shape": shape,
            "output_shape": list(y.shape),
            "onnxruntime_output": [float(v) for v in y.reshape(-1)],
            "torch_max_abs_diff": float(np.abs(y - yt).max()),
            "params": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for nm, b in model.named_buffers() if not nm.endswith("num_batches_tracked")),
            "state_dict": sorted(k for k in model.state_dict() if not k.endswith("num_batches_tracked")),
        },
    }


def write_json(ref, name):
    with open(os.path.join(ROOT, "tests", "data", name), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


def main():
    torch.manual_seed(3)
    model = torchvision.models.MobileNetV2(
        num_classes=10,
        inverted_residual_setting=[[1, 8, 1, 1], [6, 8, 2, 2], [6, 16, 3, 2]],
    )
    # A 64-wide last convolution instead of torchvision's fixed 1280 keeps the file small.
    model.features[-1] = Conv2dNormActivation(16, 64, kernel_size=1, activation_layer=nn.ReLU6)
    model.classifier[1] = nn.Linear(64, 10)
    model.eval()
    randomise_norms(model)
    xi = sine_input([2, 3, 32, 32])
    path = os.path.join(OUT, "tiny_mobilenet_v2.onnx")
    torch.onnx.export(
        model, (xi,), path, dynamo=False, opset_version=17, export_params=True,
        training=torch.onnx.TrainingMode.PRESERVE,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    size = os.path.getsize(path)
    assert size < 200_000, f"{path} is {size} bytes"
    write_json(weighted_reference("tiny_mobilenet_v2", model, xi, path), "onnx_convert_reference.json")
    print(path, size, "bytes")


if __name__ == "__main__":
    main()
