#!/usr/bin/env python3
"""Ultralytics checkpoints as .safetensors for `archscope run`, and the check that archscope
reproduces Ultralytics' head outputs with them.

The machine this project is built on reaches no network beyond PyPI, so no released checkpoint
(yolov8n.pt) can be downloaded. A checkpoint is therefore *made*: the model is built from
Ultralytics' own YAML (the installed package's cfg/models/, e.g. yolov8n.yaml = yolov8.yaml at
scale n) or from one of this repository's own files in Ultralytics' format, with a fixed seed;
its batch-norm statistics and affine parameters are randomised (so that they matter: a fresh
model has mean 0, variance 1, weight 1, bias 0), and it is saved the way Ultralytics' trainer
saves a final checkpoint: `torch.save({"model": deepcopy(model).half(), "ema": None, ...})`.

    # make a checkpoint, then convert it (any real checkpoint converts the same way)
    /tmp/torchenv/bin/python scripts/ultralytics_weights.py make yolov8n.yaml -o yolov8n.pt
    /tmp/torchenv/bin/python scripts/ultralytics_weights.py convert yolov8n.pt -o yolov8n.safetensors
    archscope run yolov8n.yaml --weights yolov8n.safetensors --image street.jpg

`convert` loads `ckpt["ema"] or ckpt["model"]`, takes `.float().state_dict()`, drops the
`num_batches_tracked` counters (no forward pass reads them) and writes every tensor as float32
under the names archscope's Ultralytics reader reads (`--names`, below).

    # the scripted check (run from the repository root, after `cargo build --release`)
    /tmp/torchenv/bin/python scripts/ultralytics_weights.py check \\
        --models yolov8n.yaml yolov5n.yaml yolo11n.yaml yolov8n-seg.yaml yolo11n-seg.yaml \\
        yolov8n-cls.yaml yolo11n-cls.yaml yolov8n-pose.yaml yolo11n-pose.yaml \\
        --json tests/data/ultralytics_weights.json
    # the fixture of tests/ultralytics_weights.rs (no Python needed to run that test)
    /tmp/torchenv/bin/python scripts/ultralytics_weights.py tiny

`check`, per model: make the checkpoint, convert it, draw a seeded input (uniform [0, 1),
1×3×640×640), run Ultralytics (`ckpt["model"].float().eval()`, the checkpoint as reloaded) and
`archscope run` on the same YAML, weights and input (`--npy`), and compare

* the raw head output: Ultralytics' Detect in eval mode returns `(y, preds)`; `preds["boxes"]`
  (N×4·reg_max×anchors, the box branches' outputs flattened and concatenated over the levels)
  and `preds["scores"]` (N×nc×anchors, the class logits), and a Segment head's
  `preds["mask_coefficient"]` or a Pose head's `preds["kpts"]` (the key-point branches before
  `kpts_decode`), concatenated on dim 1 — the per-level tensors before any decoding. archscope's are its Detect
  block's `boxes` and `scores` layers, made an output of a converted copy of the model.
* the model's own output, against Ultralytics' `y` when archscope's head decodes boxes, else
  (archscope's head before decoding: DFL distances, then sigmoid scores) against Ultralytics'
  own `dfl(preds["boxes"])` and `preds["scores"].sigmoid()` — the JSON says which.

It writes the largest absolute differences into the JSON and exits 1 when one is over --tol
(1e-4). Ultralytics' YAML is AGPL-3.0: it is read from the installed package and copied only
into a temporary directory, never into the repository.

`tiny` writes the fixture of tests/ultralytics_weights.rs from this repository's own
tests/data/ultralytics_weights_tiny.yaml: the converted weights
(tests/data/ultralytics_weights_tiny.safetensors), and in tests/data/ultralytics_weights_tiny.json
the input (1×3×32×32), Ultralytics' raw head output and its DFL/sigmoid output on it.

Names (`--names`): `ultralytics` keeps the state-dict names (`model.22.cv2.0.0.conv.weight`);
`archscope` renames them to the translation's layer paths (`m22.cv2_0.c0.weight`: `model.K` →
`mK`, a `.m.J.` → `.mJ.`, a Detect branch `cv2.I.J` → `cv2_I.cJ`, a Conv's `.conv` dropped, the
DFL's `dfl.conv` → `dfl`); `auto` (the default) chooses `ultralytics` when the translation
carries a `weights_names:` section (archscope reads Ultralytics' names itself) and `archscope`
otherwise. Either way every name is checked against the layers `archscope summary --format json`
lists, before anything runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even where a GPU exists

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
TINY_YAML = DATA / "ultralytics_weights_tiny.yaml"
TINY_INPUT = 32
# The model's (decoded) output: largest difference over largest value.
DECODED_REL_TOL = 1e-6


def package_cfg(name: str) -> str:
    """The installed package's YAML for `name` (yolov8n.yaml → …/v8/yolov8.yaml)."""
    from ultralytics.utils.checks import check_yaml

    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)  # as yaml_model_load does
    return str(check_yaml(unified, hard=False) or check_yaml(name))


def task(cfg: str) -> str:
    """The task of a model file, from its name as Ultralytics' own files are named."""
    stem = Path(cfg).stem
    for suffix, kind in (("-seg", "segment"), ("-cls", "classify"), ("-pose", "pose")):
        if stem.endswith(suffix):
            return kind
    return "detect"


def build(cfg: str, seed: int, kind: str | None = None) -> torch.nn.Module:
    """The model of `cfg` (a package name like yolov8n.yaml or a path), seeded, with random
    batch-norm statistics and affine parameters; `kind` (detect, segment, classify, pose)
    overrides the task its name gives."""
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, PoseModel, SegmentationModel

    torch.manual_seed(seed)
    cls = {"segment": SegmentationModel, "classify": ClassificationModel, "pose": PoseModel}.get(
        kind or task(cfg), DetectionModel
    )
    model = cls(cfg, verbose=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
    return model.eval()


def save_checkpoint(model: torch.nn.Module, path: str) -> None:
    """As Ultralytics' trainer leaves a final checkpoint (strip_optimizer: the EMA, in half
    precision, as "model")."""
    import ultralytics

    torch.save(
        {
            "epoch": -1,
            "best_fitness": None,
            "model": copy.deepcopy(model).half(),
            "ema": None,
            "updates": None,
            "optimizer": None,
            "version": ultralytics.__version__,
        },
        path,
    )


def load_checkpoint(path: str) -> torch.nn.Module:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).float().eval()


def archscope_name(prefix: str) -> str:
    """The translation's layer path of an Ultralytics state-dict prefix (without .weight…)."""
    s = re.sub(r"^model\.(\d+)", r"m\1", prefix)
    s = re.sub(r"\.(cv\d)\.(\d+)\.(\d+)", r".\1_\2.c\3", s)  # Detect branches
    while True:
        t = re.sub(r"\.m\.(\d+)(\.|$)", r".m\1\2", s)  # C2f/C3 inner modules
        if t == s:
            break
        s = t
    s = re.sub(r"\.dfl\.conv$", ".dfl", s)
    s = re.sub(r"\.conv$", "", s)  # a Conv's convolution is the layer; its bn is `.bn` below it
    return s


def state_dict(model: torch.nn.Module, names: str) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if names == "archscope":
            prefix, leaf = k.rsplit(".", 1)
            k = f"{archscope_name(prefix)}.{leaf}"
        sd[k] = v.detach().float().contiguous()
    return sd


def run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def translation(archscope: str, yaml_path: str, imgsz: int, out: str) -> dict:
    run([archscope, "convert", yaml_path, "--input", f"{imgsz}x{imgsz}", "-o", out])
    with open(out) as f:
        return yaml.safe_load(f)


def layer_names(archscope: str, yaml_path: str) -> set[str]:
    """Every layer of the translation with parameters or buffers (what a weights file fills)."""
    d = json.loads(run([archscope, "summary", yaml_path, "--format", "json"]))
    return {l["name"] for l in d["layers"] if l.get("params") or l.get("buffers")}


def detect_id(doc: dict) -> str:
    """The node of the translation that is the Detect head (its last node)."""
    return doc["nodes"][-1]["id"]


def with_outputs(doc: dict, outputs: list[str], extra: list[dict], path: str) -> str:
    d = copy.deepcopy(doc)
    d["nodes"].extend(extra)
    d["outputs"] = outputs
    with open(path, "w") as f:
        yaml.safe_dump(d, f, sort_keys=False)
    return path


def ultralytics_outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Ultralytics' eval-mode outputs: `raw` (the head before any decoding: boxes, scores and,
    for a segmenter, mask coefficients concatenated; a classifier's logits), `decoded` (what the
    model returns), `predecode` (the head's output with the DFL distances in place of the
    decoded boxes; a classifier's probabilities) and a segmenter's `proto`."""
    head = model.model[-1]
    out = {}
    with torch.no_grad():
        y, preds = model(x)
        if isinstance(preds, dict):
            parts = [preds["boxes"], preds["scores"]]
            if "mask_coefficient" in preds:
                parts.append(preds["mask_coefficient"])
            if "kpts" in preds:  # Pose: the key-point branches before kpts_decode
                parts.append(preds["kpts"])
            raw = torch.cat(parts, 1)
            n = raw.shape[0]
            dist = head.dfl(preds["boxes"]).view(n, 4, -1)
            pre = torch.cat([dist, preds["scores"].sigmoid(), *parts[2:]], 1)
            if isinstance(y, tuple):  # Segment: (output, proto)
                y, proto = y
                out["proto"] = proto.numpy()
        else:  # Classify: (probabilities, logits)
            raw, pre = preds, y
    out.update(raw=raw.numpy(), decoded=y.numpy(), predecode=pre.numpy())
    return out


def compare(cfg: str, yaml_src: str, work: str, a: argparse.Namespace) -> dict:
    """Make, convert and check one model; returns its JSON record."""
    os.makedirs(work, exist_ok=True)
    stem = Path(cfg).stem
    kind = task(cfg)
    # Ultralytics' default image size: 224 for a classifier, else --imgsz (640).
    imgsz = 224 if kind == "classify" else a.imgsz
    # The YAML archscope reads, under the scaled name (yolov8n.yaml), outside the repository.
    yaml_path = os.path.join(work, Path(cfg).name)
    shutil.copyfile(yaml_src, yaml_path)
    model = build(cfg, a.seed)
    pt = os.path.join(work, f"{stem}.pt")
    save_checkpoint(model, pt)
    model = load_checkpoint(pt)

    doc = translation(a.archscope, yaml_path, imgsz, os.path.join(work, "translation.yaml"))
    names = a.names
    if names == "auto":
        names = "ultralytics" if doc.get("weights_names") else "archscope"
    sd = state_dict(model, names)
    weights = os.path.join(work, f"{stem}.safetensors")
    save_file(sd, weights)
    if names == "archscope":
        want = layer_names(a.archscope, yaml_path)
        have = {k.rsplit(".", 1)[0] for k in sd}
        if want != have:
            sys.exit(
                f"{cfg}: names differ: archscope only {sorted(want - have)[:8]}, "
                f"state dict only {sorted(have - want)[:8]}"
            )

    g = torch.Generator().manual_seed(a.seed + 1)
    x = torch.rand((1, 3, imgsz, imgsz), generator=g)
    npy_in = os.path.join(work, "input.npy")
    np.save(npy_in, x.numpy())
    ref = ultralytics_outputs(model, x)

    det = detect_id(doc)
    if kind == "classify":
        raw_nodes = [{"id": "raw_head", "op": "identity", "in": f"{det}.linear"}]
    else:
        extra = {"segment": [f"{det}.mc"], "pose": [f"{det}.kpts"]}.get(kind, [])
        parts = [f"{det}.boxes", f"{det}.scores"] + extra
        raw_nodes = [{"id": "raw_head", "op": "concat", "in": parts, "dim": 1}]
    runs = [("raw", with_outputs(doc, ["raw_head"], raw_nodes, os.path.join(work, "raw.yaml"))),
            ("final", yaml_path)]
    if kind == "segment":
        runs.append(("proto", with_outputs(doc, [f"{det}.proto"], [], os.path.join(work, "proto.yaml"))))
    got = {}
    for what, y in runs:
        out = os.path.join(work, f"archscope_{what}.npy")
        run([a.archscope, "run", y, "--input", f"{imgsz}x{imgsz}", "--weights", weights,
             "--npy", npy_in, "--save-output", out])
        got[what] = np.load(out)

    def err(x, y):
        if x.shape != y.shape:
            return None
        return float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())

    raw_err = err(got["raw"], ref["raw"])
    dec_err = err(got["final"], ref["decoded"])
    # archscope's head decodes boxes (dist2bbox, in input pixels: values up to ~700, where one
    # float32 ulp is 6.1e-5), so the model's output is compared relatively: the largest
    # difference over the largest value, at most DECODED_REL_TOL (a few ulps).
    dec_ref = float(np.abs(ref["decoded"]).max())
    dec_rel = None if dec_err is None else dec_err / max(dec_ref, 1e-30)
    rec = {
        "model": stem,
        "yaml": "package" if yaml_src != cfg else cfg,
        "input": [1, 3, imgsz, imgsz],
        "seed": a.seed,
        "tensors": len(sd),
        "parameters": int(sum(v.numel() for k, v in model.state_dict().items()
                              if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))),
        "names": names,
        "raw_shape": list(ref["raw"].shape),
        "raw_max_abs": raw_err,
        "raw_max_abs_ref": float(np.abs(ref["raw"]).max()),
        "output_shape": list(got["final"].shape),
        "output_max_abs": dec_err,
        "output_max_abs_ref": dec_ref,
        "output_max_rel": dec_rel,
        "pass": raw_err is not None and raw_err <= a.tol and dec_rel is not None and dec_rel <= DECODED_REL_TOL,
    }
    rec["task"] = kind
    if kind == "segment":
        rec["proto_shape"] = list(ref["proto"].shape)
        rec["proto_max_abs"] = err(got["proto"], ref["proto"])
        rec["pass"] = rec["pass"] and rec["proto_max_abs"] is not None and rec["proto_max_abs"] <= a.tol
    print(json.dumps(rec), flush=True)
    return rec


def cmd_check(a: argparse.Namespace) -> int:
    import ultralytics

    work = a.work or tempfile.mkdtemp(prefix="archscope-ultra-")
    recs = []
    for cfg in a.models:
        src = cfg if os.path.exists(cfg) else package_cfg(cfg)
        recs.append(compare(cfg, src, os.path.join(work, Path(cfg).stem), a))
    doc = {
        "generator": "scripts/ultralytics_weights.py check",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "tolerance": a.tol,
        "output_relative_tolerance": DECODED_REL_TOL,
        "models": recs,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if not a.work:
        shutil.rmtree(work)
    return 0 if all(r["pass"] for r in recs) else 1


def cmd_tiny(a: argparse.Namespace) -> int:
    """The fixture of tests/ultralytics_weights.rs, from this repository's own tiny YAML."""
    import ultralytics

    model = build(str(TINY_YAML), a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, "tiny.pt")
        save_checkpoint(model, pt)
        model = load_checkpoint(pt)
    names = a.names if a.names != "auto" else "ultralytics"
    sd = state_dict(model, names)
    save_file(sd, str(DATA / "ultralytics_weights_tiny.safetensors"))
    g = torch.Generator().manual_seed(a.seed + 1)
    x = torch.rand((1, 3, TINY_INPUT, TINY_INPUT), generator=g)
    ref = ultralytics_outputs(model, x)
    r32 = lambda t: [float(v) for v in t.reshape(-1)]  # noqa: E731  (float32 values, as f64 text)
    doc = {
        "generator": "scripts/ultralytics_weights.py tiny",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "yaml": "tests/data/ultralytics_weights_tiny.yaml",
        "weights": "tests/data/ultralytics_weights_tiny.safetensors",
        "names": names,
        "tensors": sorted(sd),
        "input_shape": list(x.shape),
        "input": r32(x.numpy()),
        "raw_shape": list(ref["raw"].shape),
        "raw": r32(ref["raw"]),
        "predecode_shape": list(ref["predecode"].shape),
        "predecode": r32(ref["predecode"]),
        "decoded_shape": list(ref["decoded"].shape),
        "decoded": r32(ref["decoded"]),
    }
    with open(DATA / "ultralytics_weights_tiny.json", "w") as f:
        json.dump(doc, f)
        f.write("\n")
    print(f"wrote {len(sd)} tensors and outputs {doc['raw_shape']}", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    names = dict(choices=["auto", "ultralytics", "archscope"], default="auto",
                 help="tensor names to write (see the module's docstring)")

    m = sub.add_parser("make", help="a seeded checkpoint, saved as Ultralytics saves one")
    m.add_argument("model", help="an Ultralytics model YAML (yolov8n.yaml) or a path")
    m.add_argument("-o", "--out", required=True)
    m.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("convert", help="a checkpoint (.pt) to .safetensors")
    c.add_argument("pt")
    c.add_argument("-o", "--out", required=True)
    c.add_argument("--names", **{**names, "default": "ultralytics"})

    k = sub.add_parser("check", help="archscope run against Ultralytics, per model")
    k.add_argument("--models", nargs="+", default=["yolov8n.yaml"])
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--imgsz", type=int, default=640)
    k.add_argument("--names", **names)
    k.add_argument("--archscope", default=str(ROOT / "target" / "release" / "archscope"))
    k.add_argument("--tol", type=float, default=1e-4)
    k.add_argument("--json", help="write the records here (tests/data/ultralytics_weights.json)")
    k.add_argument("--work", help="keep the files here (default: a temporary directory, removed)")

    t = sub.add_parser("tiny", help="the fixture of tests/ultralytics_weights.rs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--names", **names)

    a = ap.parse_args()
    if a.cmd == "make":
        save_checkpoint(build(a.model, a.seed), a.out)
        return 0
    if a.cmd == "convert":
        sd = state_dict(load_checkpoint(a.pt), a.names)
        save_file(sd, a.out)
        print(f"wrote {a.out}: {len(sd)} tensors", file=sys.stderr)
        return 0
    if a.cmd == "check":
        return cmd_check(a)
    return cmd_tiny(a)


if __name__ == "__main__":
    sys.exit(main())
