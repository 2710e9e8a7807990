"""Issue #17's bar, scripted: full-size torchvision models exported to ONNX, with and without
weights, read by archscope; their figures against PyTorch's and `run` against onnxruntime.

    /tmp/torchenv/bin/python scripts/onnx_bar.py [--models resnet18,vit_b_16] [--keep DIR]

Needs torch, torchvision, onnx, onnxruntime (and onnxscript for the dynamo exporter) and a
built `target/release/archscope`. For each model (torchvision, `weights=None`,
`torch.manual_seed(0)`, batch 1, 224x224; googlenet without its auxiliary heads, as the zoo):

* four exports into a temporary directory (too large to commit): TorchScript
  (`dynamo=False`, opset 17) with its weights and `training=PRESERVE` (batch norms stay
  `BatchNormalization` nodes, as the module has them; in eval mode the exporter folds them
  into the convolutions and the file then holds fewer parameters than the module), the same
  graph only (`export_params=False`), and the dynamo exporter's files with weights — as
  torch 2.x writes them by default, the weights as external data in `NAME.onnx.data` beside
  the model — once with `optimize=False` (batch norms kept) and once with its default
  optimisation, which folds every batch norm into its convolution: that file is compared with
  the module's figures less the batch norms' parameters and buffers;
* PyTorch's own figures: parameters and buffers of the module (`num_batches_tracked`
  excluded: no forward pass reads it), MACs from `torch.utils.flop_counter.FlopCounterMode`
  (FLOPs / 2, with gradients enabled: see torch_figures), counted here independently of
  `tests/data/torchvision_zoo.json`; every all-zero parameter (torchvision's zero biases, ViT's
  zero head) drawn from N(0, 0.02) first, because both exporters drop an all-zero bias;
* archscope's `summary --format json` of each file (params, buffers, MACs);
* for the files with weights, `archscope run FILE --npy x.npy --save-output y.npy` against
  onnxruntime's output on the same input (largest absolute difference, and relative to the
  output's largest magnitude).

Writes tests/data/onnx_bar.json (read by tests/onnx_bar.rs) and exits 1 when a figure differs
or a run is off by more than 1e-4.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "archscope")
OUT = os.path.join(ROOT, "tests", "data", "onnx_bar.json")
MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "googlenet", "convnext_tiny", "vit_b_16"]
TOL = 1e-4


def build(name):
    torch.manual_seed(0)
    kwargs = {"weights": None}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    m = getattr(torchvision.models, name)(**kwargs)
    # torchvision initialises many parameters to one value: biases (and ViT's head) to zeros,
    # which both exporters drop (an Add of zeros), and ConvNeXt's `layer_scale`s all to 1e-6,
    # which the exporters keep as one initializer for every block of a stage (identical
    # values), so the file would hold fewer parameters than the module. Trained weights have no
    # such tensors: move each constant-valued parameter, as training would have.
    with torch.no_grad():
        for p in m.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()) or not p.any():
                p.add_(torch.randn_like(p) * 0.02)
    m.eval()
    return m


def torch_figures(m, x):
    params = sum(p.numel() for p in m.parameters())
    buffers = sum(b.numel() for n, b in m.named_buffers() if not n.endswith("num_batches_tracked"))
    # With gradients enabled: under no_grad, nn.MultiheadAttention takes its fused fast path
    # (torch._native_multi_head_attention), whose products FlopCounterMode does not count.
    fc = FlopCounterMode(display=False)
    with fc:
        m(x)
    return {"params": params, "buffers": buffers, "macs": fc.get_total_flops() // 2}


def folded_figures(m, ref):
    """What a file holds when the exporter folded every batch norm into the convolution before
    it (the dynamo exporter's default optimisation): the module's figures less the batch norms'
    weight and bias (parameters) and running statistics (buffers), plus the bias each folded
    norm gives its convolution; MACs unchanged (PyTorch counts no MACs for a batch norm)."""
    bn = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    p = sum(t.numel() for mod in bn for t in (mod.weight, mod.bias) if t is not None)
    b = sum(t.numel() for mod in bn for t in (mod.running_mean, mod.running_var) if t is not None)
    # Each folded batch norm gives the bias-free convolution before it (every torchvision
    # convolution followed by a batch norm is bias-free) a bias of its channels.
    gained = sum(mod.num_features for mod in bn)
    return {"params": ref["params"] - p + gained, "buffers": ref["buffers"] - b, "macs": ref["macs"]}


def archscope_summary(path):
    r = subprocess.run([BIN, "summary", path, "--format", "json"], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[:2000]}
    t = json.loads(r.stdout)["totals"]
    return {"params": t["params"], "buffers": t["buffers"], "macs": t["macs"]}


def run_check(path, x, tmp):
    xin = os.path.join(tmp, "x.npy")
    yout = os.path.join(tmp, "y.npy")
    np.save(xin, x)
    r = subprocess.run(
        [BIN, "run", path, "--npy", xin, "--save-output", yout, "--format", "json"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return {"error": r.stderr.strip()[:2000]}
    ours = np.load(yout)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    ref = sess.run(None, feed)[0]
    d = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))
    mag = float(np.max(np.abs(ref)))
    return {"shape": list(ref.shape), "max_abs": d, "max_abs_ref": mag, "max_rel": d / mag if mag else d}


def export(m, x, path, **kw):
    torch.onnx.export(m, (x,), path, input_names=["input"], output_names=["output"], **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--keep", help="write the exported files into this directory and keep them")
    ap.add_argument("--update", action="store_true", help="replace only these models' entries in the existing JSON")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"build archscope first: {BIN} is missing")
    rng = np.random.default_rng(0)
    results = []
    ok = True
    tmpobj = None if args.keep else tempfile.TemporaryDirectory()
    tmp = args.keep or tmpobj.name
    os.makedirs(tmp, exist_ok=True)
    for name in args.models.split(","):
        m = build(name)
        x = torch.from_numpy(rng.standard_normal((1, 3, 224, 224), dtype=np.float32))
        ref = torch_figures(m, x)
        folded = folded_figures(m, ref)
        row = {"model": name, "pytorch": ref, "pytorch_bn_folded": folded, "files": []}
        variants = [
            ("torchscript", True, ref, dict(dynamo=False, opset_version=17, training=torch.onnx.TrainingMode.PRESERVE)),
            ("torchscript_graph_only", False, ref, dict(dynamo=False, opset_version=17, training=torch.onnx.TrainingMode.PRESERVE, export_params=False)),
            ("dynamo_unoptimized", True, ref, dict(dynamo=True, optimize=False)),
            ("dynamo", True, folded, dict(dynamo=True)),
        ]
        for tag, weights, want, kw in variants:
            path = os.path.join(tmp, f"{name}_{tag}.onnx")
            try:
                export(m, x, path, **kw)
            except Exception as e:  # an exporter failure is recorded, not a verdict on archscope
                row["files"].append({"export": tag, "export_error": str(e)[:500]})
                print(f"{name} {tag}: export failed: {e}", file=sys.stderr)
                continue
            f = {"export": tag, "weights": weights, "bytes": os.path.getsize(path)}
            f["ops"] = sorted({n.op_type for n in onnx.load(path, load_external_data=False).graph.node})
            f["archscope"] = archscope_summary(path)
            f["expected"] = "pytorch" if want is ref else "pytorch_bn_folded"
            same = f["archscope"] == want
            f["same_figures"] = same
            ok &= same
            if weights:
                f["run"] = run_check(path, x.numpy(), tmp)
                good = "max_abs" in f["run"] and f["run"]["max_abs"] <= TOL
                f["run_within_tolerance"] = good
                ok &= good
            row["files"].append(f)
            print(name, tag, json.dumps(f["archscope"]), f.get("run", ""), "same" if same else f"DIFFERENT from {want}")
            if not args.keep:
                os.remove(path)
                data = path + ".data"
                if os.path.exists(data):
                    os.remove(data)
        results.append(row)
    if args.update and os.path.exists(OUT):
        with open(OUT) as fh:
            old = json.load(fh)
        done = {r["model"] for r in results}
        kept = [r for r in old["models"] if r["model"] not in done]
        order = {m: k for k, m in enumerate(MODELS)}
        results = sorted(kept + results, key=lambda r: order.get(r["model"], len(order)))
        ok = all(
            f.get("same_figures", False) and f.get("run_within_tolerance", True)
            for r in results
            for f in r["files"]
        )
    doc = {
        "generator": "scripts/onnx_bar.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "tolerance": TOL,
        "all_pass": ok,
        "models": results,
    }
    with open(OUT, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print("all pass" if ok else "SOME DIFFER", "->", OUT)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
