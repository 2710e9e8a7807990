"""Writes the ONNX reader's attention test inputs and reference figures (tests/onnx_vit.rs; run
with /tmp/torchenv/bin/python, which needs onnx, onnxscript and onnxruntime).

torch 2.15's torch.onnx.export uses the dynamo exporter by default (dynamo=True); the
TorchScript exporter is dynamo=False. Both trace nn.MultiheadAttention into MatMul/Softmax
chains (sequence-first: Transpose [1,0,2]); archscope collapses each such module back into one
`multi_head_attention` layer. Files written:

1. tests/data/onnx/vit_tiny.onnx (TorchScript exporter, with weights), vit_tiny_graph.onnx
   (TorchScript, graph only: export_params=False) and vit_tiny_dynamo.onnx (dynamo, with
   weights; the per-node `pkg.torch.onnx.stack_trace` and `fx_node` metadata are dropped to keep
   the file small, the `namespace` the reader uses is kept): torchvision's VisionTransformer with
   image 32, patch 8, 2 layers, hidden 32, 2 heads, MLP 64, 10 classes, every parameter drawn
   from a seeded normal (std 0.2; the dynamo exporter's optimiser drops all-zero biases and
   shares equal tensors, which a freshly initialised ViT has many of).
   tests/data/onnx_vit_reference.json: PyTorch's parameter and buffer counts, a fixed input and
   onnxruntime's output for each file, and the tiny model as archscope YAML's figures come from
   tests/data/onnx/vit_tiny.yaml (written by hand, torchvision's structure).
2. torchvision's vit_b_16 (weights=None, then the same seeded draw) exported graph-only by the
   TorchScript exporter (tests/data/onnx/vit_b_16_graph.onnx if it stays under 200 KB, else
   under $ARCHSCOPE_ONNX_DIR), and with weights by both exporters under $ARCHSCOPE_ONNX_DIR
   (default /tmp/archscope_onnx: 330 MB each, not committed) with onnxruntime's output on the
   fixed input; PyTorch's figures (params 86,567,656) go to the reference JSON.
"""
import json
import math
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torchvision.models import vit_b_16
from torchvision.models.vision_transformer import VisionTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")
BIG = os.environ.get("ARCHSCOPE_ONNX_DIR", "/tmp/archscope_onnx")


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def classic(model, x, path, params):
    torch.onnx.export(
        model, (x,), path, dynamo=False, opset_version=17, export_params=params,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )


def dynamo(model, x, path):
    torch.onnx.export(model, (x,), path, dynamo=True, external_data=False,
                      input_names=["image"], output_names=["logits"])
    m = onnx.load(path)
    for n in m.graph.node:
        keep = [p for p in n.metadata_props if p.key == "namespace"]
        del n.metadata_props[:]
        n.metadata_props.extend(keep)
    onnx.save(m, path)


def ort_out(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": x.numpy()})
    return y


def counts(model):
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(BIG, exist_ok=True)
    ref = {"produced_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                             "onnxruntime": ort.__version__}}
    tiny = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    randomise(tiny, 0)
    x = torch.tensor([math.sin(0.1 * i) for i in range(3 * 32 * 32)],
                     dtype=torch.float32).reshape(1, 3, 32, 32)
    with torch.no_grad():
        yt = tiny(x).numpy()
    files = {
        "vit_tiny": lambda p: classic(tiny, x, p, True),
        "vit_tiny_graph": lambda p: classic(tiny, x, p, False),
        "vit_tiny_dynamo": lambda p: dynamo(tiny, x, p),
    }
    for name, make in files.items():
        path = os.path.join(OUT, name + ".onnx")
        make(path)
        size = os.path.getsize(path)
        assert size < 200_000, f"{path} is {size} bytes"
        print(name, size, "bytes", file=sys.stderr)
        entry = {"bytes": size, **counts(tiny)}
        if name != "vit_tiny_graph":
            y = ort_out(path, x)
            entry.update({
                "input": "x[i] = sin(0.1 * i) over the flattened 1x3x32x32 input",
                "input_shape": [1, 3, 32, 32],
                "output_shape": list(y.shape),
                "onnxruntime_output": [float(v) for v in y.reshape(-1)],
                "torch_max_abs_diff": float(np.abs(y - yt).max()),
            })
        ref[name] = entry

    big = vit_b_16(weights=None).eval()
    randomise(big, 1)
    xb = torch.tensor([math.sin(0.01 * i) for i in range(3 * 224 * 224)],
                      dtype=torch.float32).reshape(1, 3, 224, 224)
    with torch.no_grad():
        ybt = big(xb).numpy()
    entry = counts(big)
    path = os.path.join(OUT, "vit_b_16_graph.onnx")
    classic(big, xb, path, False)
    if os.path.getsize(path) >= 200_000:
        os.replace(path, os.path.join(BIG, "vit_b_16_graph.onnx"))
        entry["graph_file"] = "$ARCHSCOPE_ONNX_DIR/vit_b_16_graph.onnx"
    else:
        entry["graph_file"] = "tests/data/onnx/vit_b_16_graph.onnx"
    entry["input"] = "x[i] = sin(0.01 * i) over the flattened 1x3x224x224 input"
    for name, make in [("vit_b_16", lambda p: classic(big, xb, p, True)),
                       ("vit_b_16_dynamo", lambda p: dynamo(big, xb, p))]:
        p = os.path.join(BIG, name + ".onnx")
        make(p)
        y = ort_out(p, xb)
        entry[name] = {
            "file": f"$ARCHSCOPE_ONNX_DIR/{name}.onnx",
            "bytes": os.path.getsize(p),
            "onnxruntime_output_first_10": [float(v) for v in y.reshape(-1)[:10]],
            "onnxruntime_output_sum": float(y.sum()),
            "torch_max_abs_diff": float(np.abs(y - ybt).max()),
        }
        np.save(os.path.join(BIG, name + "_ort.npy"), y)
    np.save(os.path.join(BIG, "vit_b_16_input.npy"), xb.numpy())
    ref["vit_b_16"] = entry
    with open(os.path.join(ROOT, "tests", "data", "onnx_vit_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
