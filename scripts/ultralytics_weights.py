"""Converts an Ultralytics detection model's weights to .safetensors and checks that
`archscope run` with them reproduces Ultralytics' raw head output.

The machine this project is built on reaches no network beyond PyPI, so no released
checkpoint (yolov8n.pt) can be downloaded: the model is built from Ultralytics' own YAML
(the installed package's cfg/models/, e.g. yolov8n.yaml = yolov8.yaml at scale n), seeded, its
batch-norm statistics and affine parameters randomised (so that folding and running statistics
are exercised, not left at 0/1), and its state_dict saved with Ultralytics' tensor names
(`model.0.conv.weight`, `model.22.cv2.0.0.bn.running_mean`, …), the names archscope's
Ultralytics reader gives its layers. A real checkpoint converts the same way: pass --pt FILE
(`torch.load(FILE)["model"].float().state_dict()`).

Then, with --check: the same seeded input is written as .npy, Ultralytics' eval output
(`model(x)[0]`, N×(4+nc)×anchors: xywh in input pixels and sigmoid class scores) is computed,
`archscope run YAML --weights W --npy X --save-output OUT.npy` is run, and the largest absolute
difference is printed; the script exits 1 when it is over 1e-4.

Nothing is written into the repository: every file goes to --out (default: a temporary
directory). Ultralytics' YAML is AGPL-3.0 and is read from the installed package, never copied
into the repository.

Run:
  /tmp/torchenv/bin/python scripts/ultralytics_weights.py --model yolov8n.yaml --check \
      --archscope target/release/archscope
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file


def find_cfg(name):
    """The installed package's YAML for `name` (yolov8n.yaml → v8/yolov8.yaml), as Ultralytics
    resolves it."""
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load(name)
    return d["yaml_file"]


def build(name, seed, pt):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    if pt:
        ckpt = torch.load(pt, map_location="cpu", weights_only=False)
        model = (ckpt.get("ema") or ckpt["model"]).float()
    else:
        model = DetectionModel(name, verbose=False)
        g = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov8n.yaml", help="Ultralytics model YAML name")
    ap.add_argument("--pt", help="a checkpoint to convert instead of a seeded model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--out", help="output directory (default: a temporary one)")
    ap.add_argument("--check", action="store_true", help="compare with `archscope run`")
    ap.add_argument("--archscope", default="target/release/archscope")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    out = a.out or tempfile.mkdtemp(prefix="archscope-ultra-")
    os.makedirs(out, exist_ok=True)
    model = build(a.model, a.seed, a.pt)
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    # num_batches_tracked is an int64 counter no forward pass reads.
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    stem = os.path.splitext(os.path.basename(a.model))[0]
    weights = os.path.join(out, f"{stem}.safetensors")
    save_file(sd, weights)
    print(f"wrote {weights}: {len(sd)} tensors", file=sys.stderr)
    if not a.check:
        return 0

    # The YAML archscope reads: the package's file under the scaled name (yolov8n.yaml), in
    # the output directory (outside the repository).
    yaml_path = os.path.join(out, os.path.basename(a.model))
    shutil.copyfile(find_cfg(a.model), yaml_path)
    g = torch.Generator().manual_seed(a.seed + 1)
    x = torch.rand((1, 3, a.imgsz, a.imgsz), generator=g)
    npy_in = os.path.join(out, "input.npy")
    np.save(npy_in, x.numpy())
    with torch.no_grad():
        y = model(x)
    y = y[0] if isinstance(y, (list, tuple)) else y
    want = y.numpy()
    npy_out = os.path.join(out, "archscope_out.npy")
    cmd = [a.archscope, "run", yaml_path, "--weights", weights, "--npy", npy_in, "--save-output", npy_out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}", file=sys.stderr)
        return 1
    got = np.load(npy_out)
    if got.shape != want.shape:
        print(f"shapes differ: archscope {got.shape}, Ultralytics {want.shape}", file=sys.stderr)
        return 1
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    boxes = float(np.abs(got[:, :4] - want[:, :4]).max())
    scores = float(np.abs(got[:, 4:] - want[:, 4:]).max())
    print(f"{a.model}: output {tuple(want.shape)}, max |archscope - Ultralytics| = {diff:.3g} (boxes {boxes:.3g} px, scores {scores:.3g})")
    return 0 if diff <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
