#!/usr/bin/env python3
"""Cross-check archscope's f32 executor against PyTorch on the same weights and input.

For each model (default: resnet18 and googlenet) this script

1. builds the torchvision model with ``weights=None`` after ``torch.manual_seed(0)``
   (googlenet: ``aux_logits=False, init_weights=True, transform_input=False``);
2. gives every BatchNorm realistic state: its affine weight/bias are drawn away from the
   default 1/0 (so a swapped or ignored gamma/beta would show), and its running statistics
   are the cumulative average over 4 train-mode passes on random image-like batches of 8 (so
   they are not 0/1); then switches to eval mode;
3. maps torchvision's parameterised leaf modules to archscope's layers *generically*: forward
   hooks list torchvision's Conv2d/Linear/BatchNorm2d modules in execution order,
   ``archscope summary MODEL --format json`` lists archscope's layers with ``params > 0`` in
   execution order; the two lists are zipped and every pair must agree in type and parameter
   count (and output shape);
4. writes ``<torchvision module>.weight/.bias/.running_mean/.running_var`` to a .safetensors file
   (torchvision's own state-dict names, which every torchvision zoo model's ``weights_names:``
   maps its layers to),
   a seeded, ImageNet-normalised, image-like 1x3xHxW input (the model's default H x W) to a
   .npy file, runs
   ``archscope run MODEL --weights F --npy x.npy --save-output out.npy`` and compares with
   PyTorch's logits (f32, and also an f64 PyTorch run as the reference for both).

Bar: max |archscope - torch| / max |torch logit| <= 1e-4, and the same top-5.

With ``--controls`` it also shows that the comparison would catch real mistakes (negative
controls, each must *miss* the bar): BatchNorm gamma and beta swapped in the weights file;
the first convolution's kernels flipped spatially (convolution instead of cross-correlation);
the PyTorch reference recomputed with a different BatchNorm eps (1e-5 <-> 1e-3).

Run from the repository root (needs torch, torchvision, numpy, safetensors):

    /tmp/torchenv/bin/python scripts/torch_crosscheck.py                  # resnet18 googlenet
    /tmp/torchenv/bin/python scripts/torch_crosscheck.py resnet50 --keep /tmp/xc
    /tmp/torchenv/bin/python scripts/torch_crosscheck.py --json out.json

``ARCHSCOPE=/path/to/archscope`` runs another binary than ``target/release/archscope`` (e.g. a
copy, so that a rebuild during the run cannot change it). Exit status 1 when a model misses
the bar or cannot be mapped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARCHSCOPE = Path(os.environ.get("ARCHSCOPE", ROOT / "target" / "release" / "archscope"))
BAR = 1e-4

BUILDER_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True, "transform_input": False},
    "inception_v3": {"aux_logits": False, "init_weights": True, "transform_input": False},
}

# torchvision module type -> archscope op
OPS = {nn.Conv2d: "conv2d", nn.Linear: "linear", nn.BatchNorm2d: "batchnorm2d"}


def build(name: str, hw: tuple[int, int]) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **BUILDER_KWARGS.get(name, {}))
    # BatchNorm affine parameters away from the default 1 / 0.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    # Running statistics from a few train-mode passes (momentum 0.1 default; use a cumulative
    # average so the stats are the batches' own, not 0.9 * (0, 1) + ...).
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = None
        m.reset_running_stats()
    model.train()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(4):
            model(image_like(8, g, hw))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
    return model


def image_like(n: int, g: torch.Generator, hw: tuple[int, int] = (224, 224)) -> torch.Tensor:
    """Smooth-ish random images in [0, 1], ImageNet-normalised (N x 3 x H x W): bilinear
    upsampled 1/8-resolution noise plus 20% pixel noise."""
    coarse = torch.rand(n, 3, hw[0] // 8, hw[1] // 8, generator=g)
    fine = torch.rand(n, 3, hw[0], hw[1], generator=g)
    img = 0.8 * nn.functional.interpolate(coarse, size=hw, mode="bilinear",
                                          align_corners=False) + 0.2 * fine
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((img - mean) / std).contiguous()


def torch_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Parameterised leaf modules (Conv2d/Linear/BatchNorm2d) in forward order, first call
    only, with that call's output."""
    order: list[tuple[str, nn.Module, torch.Tensor]] = []
    seen: set[int] = set()
    names = {id(m): n for n, m in model.named_modules()}
    hooks = []

    def hook(mod, _inp, out):
        if id(mod) not in seen:
            seen.add(id(mod))
            order.append((names[id(mod)], mod, out.detach().clone()))

    for m in model.modules():
        if not list(m.children()) and (any(True for _ in m.parameters(recurse=False))
                                       or isinstance(m, nn.BatchNorm2d)):
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return order


def archscope_summary(model: str) -> dict:
    out = subprocess.run([str(ARCHSCOPE), "summary", model, "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def module_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def mapping(model_name: str, tv: list, arch: list[dict]) -> list[tuple[str, str, nn.Module]]:
    """Zip torchvision's parameterised modules with archscope's params > 0 layers."""
    a = [l for l in arch if l["params"] > 0]
    problems = []
    if len(a) != len(tv):
        problems.append(f"{len(tv)} torchvision parameterised modules vs {len(a)} archscope "
                        f"layers with params > 0")
    pairs = []
    for (tname, mod, out), l in zip(tv, a):
        op = OPS.get(type(mod))
        if op != l["op"]:
            problems.append(f"type: {tname} ({type(mod).__name__}) vs {l['name']} ({l['op']})")
        if module_params(mod) != l["params"]:
            problems.append(f"params: {tname} {module_params(mod)} vs {l['name']} {l['params']}")
        if list(out.shape) != list(l["output"]):
            problems.append(f"shape: {tname} {list(out.shape)} vs {l['name']} {l['output']}")
        pairs.append((l["name"], tname, mod))
    if problems:
        raise SystemExit(f"{model_name}: mapping failed:\n  " + "\n  ".join(problems[:20]))
    return pairs


def state_for(pairs) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for _aname, tname, mod in pairs:
        items = {"weight": mod.weight, "bias": mod.bias}
        if isinstance(mod, nn.BatchNorm2d):
            items["running_mean"] = mod.running_mean
            items["running_var"] = mod.running_var
        for k, v in items.items():
            if v is not None:
                tensors[f"{tname}.{k}"] = v.detach().to(torch.float32).contiguous().numpy().copy()
    return tensors


def run_archscope(model: str, weights: Path, x_npy: Path, out_npy: Path) -> np.ndarray:
    cmd = [str(ARCHSCOPE), "run", model, "--weights", str(weights), "--npy", str(x_npy),
           "--save-output", str(out_npy), "--format", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"archscope failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return np.load(out_npy)


def compare(ref: np.ndarray, got: np.ndarray) -> dict:
    ref = ref.reshape(-1).astype(np.float64)
    got = got.reshape(-1).astype(np.float64)
    err = np.abs(ref - got)
    scale = float(np.abs(ref).max())
    top_ref = np.argsort(-ref, kind="stable")[:5].tolist()
    top_got = np.argsort(-got, kind="stable")[:5].tolist()
    return {
        "max_abs_err": float(err.max()),
        "max_abs_logit": scale,
        "max_rel_err": float(err.max() / scale),
        "mean_abs_err": float(err.mean()),
        "top5_ref": top_ref,
        "top5_got": top_got,
        "top5_agree": top_ref == top_got,
        "top1_agree": top_ref[0] == top_got[0],
    }


def crosscheck(name: str, work: Path, controls: bool = False) -> dict:
    summary = archscope_summary(name)
    arch = summary["layers"]
    hw = tuple(summary["input"][-2:])  # the model's default input, e.g. 299x299 for inception_v3
    model = build(name, hw)
    x = image_like(1, torch.Generator().manual_seed(3), hw)
    tv = torch_layers(model, x)
    pairs = mapping(name, tv, arch)

    weights = work / f"{name}.safetensors"
    x_npy = work / f"{name}_x.npy"
    out_npy = work / f"{name}_out.npy"
    save_file(state_for(pairs), str(weights))
    np.save(x_npy, x.numpy())

    with torch.no_grad():
        ref32 = model(x).numpy()
        ref64 = model.double()(x.double()).numpy()
    got = run_archscope(name, weights, x_npy, out_npy)
    if got.shape != ref32.shape:
        raise SystemExit(f"{name}: output shape {got.shape} vs torch {ref32.shape}")

    res = {
        "model": name,
        "mapped_layers": len(pairs),
        "tensors": len(state_for(pairs)),
        "archscope_vs_torch_f32": compare(ref32, got),
        "archscope_vs_torch_f64": compare(ref64, got),
        "torch_f32_vs_torch_f64": compare(ref64, ref32),
        "files": {"weights": str(weights), "input": str(x_npy), "output": str(out_npy)},
    }
    res["pass"] = (res["archscope_vs_torch_f32"]["max_rel_err"] <= BAR
                   and res["archscope_vs_torch_f32"]["top5_agree"])
    if controls:
        res["controls"] = negative_controls(name, model.float(), x, pairs, x_npy, ref32, got,
                                            work)
    return res


def negative_controls(name, model, x, pairs, x_npy, ref32, got, work) -> dict:
    """Deliberate mistakes; each should give a max relative error far above the bar."""
    out = {}
    base = state_for(pairs)
    bn_names = [t for _a, t, m in pairs if isinstance(m, nn.BatchNorm2d)]
    first_conv = next(t for _a, t, m in pairs if isinstance(m, nn.Conv2d))

    swapped = dict(base)
    for a in bn_names:
        swapped[f"{a}.weight"], swapped[f"{a}.bias"] = base[f"{a}.bias"], base[f"{a}.weight"]
    flipped = dict(base)
    flipped[f"{first_conv}.weight"] = base[f"{first_conv}.weight"][:, :, ::-1, ::-1].copy()
    controls = [(f"{first_conv} kernel flipped", flipped)]
    if bn_names:  # models without batch norm (vgg16, alexnet) have no γ/β to swap
        controls.insert(0, ("bn gamma/beta swapped", swapped))
    for label, tensors in controls:
        w = work / f"{name}_control.safetensors"
        save_file(tensors, str(w))
        o = run_archscope(name, w, x_npy, work / f"{name}_control_out.npy")
        out[label] = compare(ref32, o)["max_rel_err"]

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return out
    saved = [m.eps for m in bns]
    changed = 1e-5 if saved[0] > 5e-4 else 1e-3
    for m in bns:
        m.eps = changed
    with torch.no_grad():
        other = model(x).numpy()
    for m, e in zip(bns, saved):
        m.eps = e
    out[f"torch reference with bn eps {saved[0]:g} -> {changed:g}"] = \
        compare(other, got)["max_rel_err"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["resnet18", "googlenet"])
    ap.add_argument("--keep", type=Path, help="directory for the .safetensors/.npy files "
                    "(default: a temporary directory, removed)")
    ap.add_argument("--controls", action="store_true",
                    help="also run negative controls (deliberate mistakes that must fail)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if not ARCHSCOPE.exists():
        raise SystemExit(f"{ARCHSCOPE} missing: cargo build --release")
    torch.set_num_threads(2)

    tmp = None
    if args.keep:
        work = args.keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="archscope_xc_")
        work = Path(tmp.name)

    results = []
    for name in args.models:
        try:
            r = crosscheck(name, work, args.controls)
        except SystemExit as e:  # mapping or archscope failure: report, go on
            print(e, file=sys.stderr)
            results.append({"model": name, "pass": False, "error": str(e)})
            continue
        results.append(r)
        a, b, c = (r["archscope_vs_torch_f32"], r["archscope_vs_torch_f64"],
                   r["torch_f32_vs_torch_f64"])
        print(f"{name}: {r['mapped_layers']} layers mapped, {r['tensors']} tensors")
        print(f"  archscope vs torch f32: max abs {a['max_abs_err']:.3e}, max rel "
              f"{a['max_rel_err']:.3e} (max |logit| {a['max_abs_logit']:.3f}), top-5 "
              f"{'agree' if a['top5_agree'] else 'DIFFER'} {a['top5_got']} vs {a['top5_ref']}")
        print(f"  archscope vs torch f64: max abs {b['max_abs_err']:.3e}, max rel "
              f"{b['max_rel_err']:.3e}")
        print(f"  torch f32 vs torch f64: max abs {c['max_abs_err']:.3e}, max rel "
              f"{c['max_rel_err']:.3e}")
        for label, rel in r.get("controls", {}).items():
            print(f"  control ({label}): max rel {rel:.3e} "
                  f"({'caught' if rel > BAR else 'NOT CAUGHT'})")
        print(f"  {'PASS' if r['pass'] else 'FAIL'} (bar: max rel <= {BAR:g}, same top-5)")

    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__,
                                         "torchvision": torchvision.__version__,
                                         "results": results}, indent=2) + "\n")
    if tmp:
        tmp.cleanup()
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
