#!/usr/bin/env python3
"""Forward latency and peak memory of archscope's executor against onnxruntime and PyTorch.

Same architecture, same machine, same run, batch 1, the model's default input (224x224 for the
models below), f32, CPU, 2 threads each:

* archscope: ``archscope run MODEL --repeat N --format json`` -- its own seeded random weights
  and input; ``latency_ms.median`` / ``min`` are per forward pass over the N passes (archscope
  does no separate warm-up: the first, cold pass is one of the N). Its thread pool (rayon)
  is sized to the machine's 2 cores; ``RAYON_NUM_THREADS=2`` is set anyway.
* onnxruntime: torchvision's model (``weights=None``, ``torch.manual_seed(0)``, eval) exported
  with ``torch.onnx.export(..., opset_version=17, dynamo=False)``; ``InferenceSession`` with
  CPUExecutionProvider, ``intra_op_num_threads=2``, ``inter_op_num_threads=1``,
  ``graph_optimization_level=ORT_ENABLE_ALL``; 3 warm-up runs, then N timed ``session.run``.
* torch (reference): the same torchvision model, ``torch.set_num_threads(2)``, ``no_grad``,
  eval; 3 warm-up runs, then N timed forwards.

Every measurement runs in its own child process under ``/usr/bin/time -f %M``: its peak RSS
("Maximum resident set size" of ``/usr/bin/time -v``).
The onnxruntime child imports only numpy and onnxruntime (not torch), so its RSS is the
runtime's; the torch child's RSS includes ``import torch`` (~0.8 GB for the CUDA wheel, before
any model); archscope's is its whole process, which also builds the seeded random weights.

The machine is shared, so each model is measured ``--rounds`` times (default 2), rounds
interleaved (all models and runtimes once, then again), each with the 1-minute load average
at its start. A Markdown table of every round is printed, then the best figures over the
rounds (contention only adds time); ``--json`` also writes the raw figures.

Run from the repository root (needs torch, torchvision, onnx, onnxruntime, numpy; about 3-5
minutes on 2 cores; ``cargo build --release`` first):

    /tmp/torchenv/bin/python scripts/bench_executor.py --write-doc   # the whole table below
    /tmp/torchenv/bin/python scripts/bench_executor.py resnet18 -n 50 --rounds 3 --json b.json

Without model names it measures the thirteen models of docs/PERFORMANCE.md's executor table:
the ten of issue #19's bar (every one within 1.25x of onnxruntime) and the three transformer
models (about 15-20 minutes on 2 cores). ``--write-doc`` rewrites that table in
docs/PERFORMANCE.md, between the ``bench_executor:begin`` and ``bench_executor:end`` markers,
from this run's best medians.

``ARCHSCOPE=/path/to/archscope`` times another binary than ``target/release/archscope`` (e.g. a
copy, so that a rebuild during the run cannot change what is timed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only
warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")

ROOT = Path(__file__).resolve().parent.parent
ARCHSCOPE = Path(os.environ.get("ARCHSCOPE", ROOT / "target" / "release" / "archscope"))
THREADS = 2
WARMUP = 3
# Issue #19's bar: archscope's best median within BAR x onnxruntime's on each of these.
BAR_MODELS = ["resnet50", "vgg16", "googlenet", "inception_v3", "densenet121", "resnext50_32x4d",
              "squeezenet1_1", "shufflenet_v2_x1_0", "mobilenet_v3_small", "efficientnet_b0"]
TRANSFORMERS = ["vit_b_16", "swin_t", "convnext_tiny"]
BAR = 1.25
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench_executor:begin -->", "<!-- bench_executor:end -->"


# ---------------------------------------------------------------- child processes

def worker_ort(onnx_path: str, n: int, shape: list[int]) -> dict:
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for _ in range(WARMUP):
        sess.run(None, {name: x})
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    return {"times_ms": times, "load_ms": load_ms, "version": ort.__version__}


def worker_torch(model_name: str, n: int, shape: list[int]) -> dict:
    import torch
    import torchvision

    torch.set_num_threads(THREADS)
    model = tv_model(torchvision, torch, model_name)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(WARMUP):
            model(x)
        for _ in range(n):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1e3)
    return {"times_ms": times, "version": torch.__version__}


def tv_model(torchvision, torch, name: str):
    torch.manual_seed(0)
    kwargs = {"googlenet": {"aux_logits": False, "init_weights": True},
              "inception_v3": {"aux_logits": False, "init_weights": True}}.get(name, {})
    return getattr(torchvision.models, name)(weights=None, **kwargs).eval()


# ---------------------------------------------------------------- parent

def measured(cmd: list[str], env: dict | None = None) -> tuple[str, int, float]:
    """Run cmd under ``/usr/bin/time -f %M``; return (stdout, peak RSS in KiB, wall seconds).

    Not ``os.wait4`` on a child of this process: Linux carries the RSS high-water mark of the
    forking process (this one, with torch loaded: ~0.9 GB) into the exec'ed child's
    ``ru_maxrss``; /usr/bin/time is a small C program, so its child starts from ~nothing."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rf:
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rf.name, *cmd],
                           capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        rss = rf.read().strip().splitlines()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout, int(rss[-1]), wall


def loadavg() -> float:
    return os.getloadavg()[0]


def stats(times: list[float]) -> dict:
    s = sorted(times)
    return {"median": s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2,
            "min": s[0], "runs": len(s)}


def bench_archscope(model: str, n: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    load = loadavg()
    out, rss, wall = measured([str(ARCHSCOPE), "run", model, "--repeat", str(n),
                               "--format", "json"], env)
    lat = json.loads(out)["latency_ms"]
    return {"median": lat["median"], "min": lat["min"], "runs": lat["runs"], "rss_kib": rss,
            "wall_s": wall, "load1": load}


def bench_child(kind: str, arg: str, n: int, shape: list[int]) -> dict:
    load = loadavg()
    out, rss, wall = measured([sys.executable, __file__, "--worker", kind, arg, "-n", str(n),
                               "--shape", ",".join(map(str, shape))])
    r = json.loads(out.strip().splitlines()[-1])
    return {**stats(r["times_ms"]), "rss_kib": rss, "wall_s": wall, "load1": load,
            **({"load_ms": r["load_ms"]} if "load_ms" in r else {}), "version": r["version"]}


def export_onnx(model: str, shape: list[int], work: Path) -> tuple[Path, float]:
    """Export torchvision's model to ONNX (opset 17, one file); also check onnxruntime's output
    against torch's on one input (max relative error), so a broken export cannot pass as fast."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    import torchvision

    path = work / f"{model}.onnx"
    m = tv_model(torchvision, torch, model)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    if not path.exists():
        # The TorchScript-based exporter: it writes opset 17 natively (the dynamo exporter's
        # minimum is 18, and its down-conversion to 17 fails on these models).
        torch.onnx.export(m, (x,), str(path), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
    opset = {o.domain: o.version for o in onnx.load(str(path), load_external_data=False)
             .opset_import}.get("", None)
    if opset != 17:
        raise SystemExit(f"{path}: opset {opset}, wanted 17")
    with torch.no_grad():
        ref = m(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    return path, rel


def input_shape(model: str) -> list[int]:
    out = subprocess.run([str(ARCHSCOPE), "summary", model, "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["input"]


def fmt_ms(r: dict) -> str:
    return f"{r['median']:.1f} / {r['min']:.1f}"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=BAR_MODELS + TRANSFORMERS)
    ap.add_argument("-n", type=int, default=20, help="timed forward passes (default 20)")
    ap.add_argument("--rounds", type=int, default=2, help="measurements of each (default 2)")
    ap.add_argument("--work", type=Path, help="where the .onnx files go (default: temporary)")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--write-doc", action="store_true",
                    help="rewrite the table of docs/PERFORMANCE.md from this run's best medians")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        kind, arg = args.worker
        shape = [int(s) for s in args.shape.split(",")]
        r = worker_ort(arg, args.n, shape) if kind == "ort" else worker_torch(arg, args.n, shape)
        print(json.dumps(r))
        return 0

    if not ARCHSCOPE.exists():
        raise SystemExit(f"{ARCHSCOPE} missing: cargo build --release")
    tmp = None
    if args.work:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="archscope_bench_")
        work = Path(tmp.name)

    shapes = {m: input_shape(m) for m in args.models}
    onnx_files, export_check = {}, {}
    for m in args.models:
        onnx_files[m], export_check[m] = export_onnx(m, shapes[m], work)
        print(f"# {m}: exported {onnx_files[m].name} ({onnx_files[m].stat().st_size / 2**20:.0f} "
              f"MiB); onnxruntime vs torch max rel err {export_check[m]:.1e}", file=sys.stderr)

    results: dict[str, list[dict]] = {m: [] for m in args.models}
    for rnd in range(args.rounds):
        for m in args.models:
            a = bench_archscope(m, args.n)
            o = bench_child("ort", str(onnx_files[m]), args.n, shapes[m])
            t = bench_child("torch", m, args.n, shapes[m])
            results[m].append({"round": rnd + 1, "archscope": a, "onnxruntime": o, "torch": t})
            print(f"# round {rnd + 1} {m}: archscope {fmt_ms(a)}, onnxruntime {fmt_ms(o)}, "
                  f"torch {fmt_ms(t)} ms (load {a['load1']:.1f})", file=sys.stderr)

    print(f"\nbatch 1, f32, {THREADS} threads, median / min of {args.n} forward passes (ms); "
          f"peak RSS of the whole process (MiB)\n")
    print("| model | round | archscope median / min | onnxruntime median / min | "
          "archscope / ort (median) | torch median / min | archscope RSS | ort RSS | "
          "torch RSS | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in args.models:
        for r in results[m]:
            a, o, t = r["archscope"], r["onnxruntime"], r["torch"]
            print(f"| {m} | {r['round']} | {fmt_ms(a)} | {fmt_ms(o)} | "
                  f"{a['median'] / o['median']:.2f}x | {fmt_ms(t)} | {mib(a['rss_kib'])} | "
                  f"{mib(o['rss_kib'])} | {mib(t['rss_kib'])} | "
                  f"{a['load1']:.1f} |")

    if args.rounds > 1:
        # On a shared machine contention only ever adds time: the lowest figures over the
        # rounds are the closest to each runtime's own speed.
        print(f"\nbest over the {args.rounds} rounds: lowest median / lowest min (ms); ratio of "
              "the lowest medians\n")
        print("| model | archscope | onnxruntime | archscope / ort | torch |")
        print("|---|---:|---:|---:|---:|")
        for m in args.models:
            best = {k: {"median": min(r[k]["median"] for r in results[m]),
                        "min": min(r[k]["min"] for r in results[m])}
                    for k in ("archscope", "onnxruntime", "torch")}
            a, o, t = best["archscope"], best["onnxruntime"], best["torch"]
            print(f"| {m} | {fmt_ms(a)} | {fmt_ms(o)} | {a['median'] / o['median']:.2f}x | "
                  f"{fmt_ms(t)} |")

    if args.write_doc:
        write_doc(results, args)

    if args.json:
        first = results[args.models[0]][0]
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "onnxruntime": first["onnxruntime"]["version"],
            "torch": first["torch"]["version"],
            "n": args.n,
            "export_check_max_rel_err": export_check,
            "results": results,
        }, indent=2) + "\n")
    if tmp:
        tmp.cleanup()
    return 0


def doc_table(results: dict[str, list[dict]], args) -> str:
    """The Markdown that docs/PERFORMANCE.md shows between its markers: one row per model, each
    runtime's best median over the rounds, the ratio, and whether the bar holds."""
    first = results[args.models[0]][0]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} by `scripts/bench_executor.py --write-doc` "
        f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; onnxruntime "
        f"{first['onnxruntime']['version']}, torch {first['torch']['version']}): batch 1, f32, "
        f"{THREADS} threads, best median of {args.n} forward passes over {args.rounds} "
        "interleaved rounds (ms), 1-minute load average at the start of each round "
        f"{', '.join(f'{l:.1f}' for l in round_loads(results))}.",
        "",
        "| model | archscope | onnxruntime | archscope / ort | PyTorch eager | bar (≤ "
        f"{BAR}×) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for m in args.models:
        best = {k: min(r[k]["median"] for r in results[m])
                for k in ("archscope", "onnxruntime", "torch")}
        ratio = best["archscope"] / best["onnxruntime"]
        bar = ("met" if ratio <= BAR else "**not met**") if m in BAR_MODELS else "—"
        lines.append(f"| {m} | {best['archscope']:.2f} | {best['onnxruntime']:.2f} | "
                     f"{ratio:.2f}× | {best['torch']:.2f} | {bar} |")
    return "\n".join(lines)


def round_loads(results: dict[str, list[dict]]) -> list[float]:
    first = next(iter(results.values()))
    return [r["archscope"]["load1"] for r in first]


def write_doc(results: dict[str, list[dict]], args) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{doc_table(results, args)}\n{END}{tail}")
    print(f"# wrote the table into {DOC}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
