"""Whole-process time of `archscope summary` next to the Python profilers users run instead.

Run from the repository root after `cargo build --release`:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch torchvision torchinfo fvcore ptflops thop
    /tmp/torchenv/bin/python scripts/bench_summary.py

Each tool is timed as a user meets it: a fresh process that loads the model and prints its
summary (for the Python tools: interpreter start, `import torch`, model construction and the
tool's own pass), median of N runs, same machine, same run. The in-process time of the tool's
call alone is reported too. Not part of CI.
"""
import json
import statistics
import subprocess
import sys
import time

N = 10
ARCHSCOPE = "./target/release/archscope"

PY_TOOLS = {
    "torchinfo": ("from torchinfo import summary", "summary(m, input_size=(1, 3, 224, 224), verbose=0)"),
    "fvcore": ("from fvcore.nn import FlopCountAnalysis", "FlopCountAnalysis(m, torch.randn(1, 3, 224, 224)).total()"),
    "ptflops": ("from ptflops import get_model_complexity_info",
                "get_model_complexity_info(m, (3, 224, 224), print_per_layer_stat=False, as_strings=False)"),
    "thop": ("from thop import profile", "profile(m, inputs=(torch.randn(1, 3, 224, 224),), verbose=False)"),
}


def wall(cmd):
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def py_script(model, imp, call):
    return (
        "import time, torch, torchvision, warnings\nwarnings.filterwarnings('ignore')\n"
        f"{imp}\nm = torchvision.models.{model}(weights=None).eval()\n"
        f"t = time.perf_counter()\nwith torch.no_grad():\n    {call}\n"
        "print((time.perf_counter() - t) * 1e3)\n"
    )


def main():
    rows = []
    for model in ["resnet50", "resnet152"]:
        ms = wall([ARCHSCOPE, "summary", model, "--format", "json"])
        rows.append((model, "archscope summary --format json", ms, None))
        ms = wall([ARCHSCOPE, "summary", model])
        rows.append((model, "archscope summary (table)", ms, None))
        for tool, (imp, call) in PY_TOOLS.items():
            script = py_script(model, imp, call)
            inproc = []
            for _ in range(3):
                out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
                inproc.append(float(out.stdout.strip().splitlines()[-1]))
            ms = wall([sys.executable, "-c", script])
            rows.append((model, tool, ms, statistics.median(inproc)))
    print("| model | tool | whole process (median of %d) | the tool's call alone |" % N)
    print("|---|---|---:|---:|")
    for model, tool, ms, call in rows:
        c = "" if call is None else f"{call:.0f} ms"
        print(f"| {model} | {tool} | {ms:.1f} ms | {c} |")
    json.dump(rows, open("/tmp/bench_summary.json", "w"))


if __name__ == "__main__":
    main()
