"""Measure the numbers the documentation quotes, and write them in one place.

A measurement, not a test: timings and the last digits of rounding differences
depend on the machine. The pages in docs/ and the README link here instead of
copying numbers. It writes:

- ``docs/measured.md``: parity on the notebook spec, the chaotic run's
  diagnosis, the digits recipe and the named recipes (the digits ones need
  scikit-learn),
  the float32 measurements (``tools/measure_float32.py``'s output), data-parallel
  parity on 2 replicas, and
  ``nnparity bench``'s tables (the digits CNN's, the row-by-row GRU's and the
  transformer block's included) with the targets of issue 6, the CNN's and
  issue 14's, under a header saying when, where and how;
- the README's ``nnparity compare`` output, between the
  ``<!-- measured: compare -->`` markers (the timing line left out).

Run: python tools/measure.py [--skip-bench] [--repeats N]
(about 15-20 minutes on 2 cores with every backend and peer installed)
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "docs" / "measured.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- measured: compare -->", "<!-- /measured -->"
BACKENDS = ["numpy", "torch", "jax"]
#: the 1-minute load average when the script started (its own work comes after)
START_LOAD = os.getloadavg()[0]
#: above this, other work held about a core: the timings are flagged
BUSY_LOAD = 0.5


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> str:
    import jax
    import torch
    return (f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"torch {torch.__version__}, jax {jax.__version__}")


def parameter_quantities(differences: dict) -> dict:
    return {k: d for k, d in differences.items() if k not in ("predictions", "losses")}


def compare_output() -> str:
    """``nnparity compare``'s output for the notebook spec, without its timing line."""
    from nnparity.shared.cli.main import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(["compare"])
    if status != 0:
        raise SystemExit(f"nnparity compare exited with {status}:\n{buffer.getvalue()}")
    lines = [line for line in buffer.getvalue().splitlines()
             if not line.startswith("train seconds:")]
    return "\n".join(lines)


def notebook_parity() -> list[str]:
    from nnparity.shared import compare, notebook_data, notebook_spec

    report = compare(notebook_spec(), notebook_data())
    out = ["## Parity on the notebook spec", "",
           "`compare(notebook_spec(), notebook_data())`: 2000 SGD steps, float64, against "
           "numpy, normwise per tensor (max|a - e| / max|e|).", "",
           "| backend | largest rel. difference, parameters | predictions | losses (elementwise) |",
           "| --- | --- | --- | --- |"]
    for p in report.parity:
        params = max(d.max_rel for d in parameter_quantities(p.differences).values())
        out.append(f"| {p.backend} | {params:.1e} | {p.differences['predictions'].max_rel:.1e} "
                   f"| {p.differences['losses'].max_rel:.1e} |")
    worst = max(d.max_rel for p in report.parity
                for d in parameter_quantities(p.differences).values())
    out += ["", f"Largest over both backends and every parameter: {worst:.1e} relative, "
            f"against the policy's rtol {report.tolerance.rtol:g}.", ""]
    return out


def chaotic() -> list[str]:
    from nnparity.shared import compare
    from nnparity.shared.core.synthetic import chaotic_case

    spec, data = chaotic_case()
    report = compare(spec, data)
    keep = [line for line in str(report).splitlines()
            if line.startswith(("diagnosis", "verdict"))
            or "teacher-forced steps, the closest call" in line
            or "first snapshot out" in line]
    return ["## The chaotic run", "",
            "`nnparity.shared.core.synthetic.chaotic_case()`: sizes (3, 16, 16, 1), tanh, "
            "`SGD(lr=0.1, momentum=0.9)`, 500 epochs. Lines of `compare`'s report:", "",
            "```", *keep, "```", ""]


def digits() -> list[str]:
    import importlib.util

    out = ["## The digits recipe", ""]
    if importlib.util.find_spec("sklearn") is None:
        return out + ["Skipped: scikit-learn (the `datasets` extra) is not installed.", ""]
    from nnparity.shared import Adam, NetworkSpec, compare, load_dataset

    spec = NetworkSpec(sizes=(64, 64, 10), activation="relu", init="he_normal",
                       loss="cross_entropy", optimizer=Adam(lr=1e-3), batch_size=32, epochs=20,
                       seed=0)
    report = compare(spec, load_dataset("digits"))
    out += ["Sizes (64, 64, 10), relu, he_normal, cross_entropy, `Adam(lr=1e-3)`, batch 32, "
            "20 epochs, seed 0, float64.", "",
            "| backend | test accuracy | largest parameter difference to numpy (abs / rel) |",
            "| --- | --- | --- |"]
    for name, result in report.results.items():
        p = next((p for p in report.parity if p.backend == name), None)
        diff = "(reference)"
        if p is not None:
            params = parameter_quantities(p.differences).values()
            diff = f"{max(d.max_abs for d in params):.1e} / {max(d.max_rel for d in params):.1e}"
        out.append(f"| {name} | {100 * result.metrics['test_accuracy']:.1f}% | {diff} |")
    out += ["", f"Verdict: {'parity holds' if report.ok else 'PARITY FAILED'} under the float64 "
            "policy.", ""]
    return out


#: recipe -> what its section says before the table
RECIPE_NOTES = {
    "digits_cnn": "The README's CNN: 40 epochs, 1800 steps. In float32 the free-running runs "
                  "leave the float32 tolerance after about 750 steps: rounding amplified, as "
                  "the NumPy backend against itself with initial parameters one ulp apart "
                  "shows (`tests/test_recipes.py`).",
    "digits_gru": "A GRU(32) reading each digit as 8 rows of 8 pixels, 15 epochs.",
    "digits_lstm": "The same with an LSTM(32).",
    "zen_transformer": "A pre-LN transformer block with causal attention over windows of 32 "
                       "characters of the Zen of Python, 20 epochs. It is tested on the text "
                       "it trained on: the loss measures memorisation of 856 characters.",
    "zen_gru": "Its GRU(64) baseline, 30 epochs, the same data.",
}


def recipe(name: str) -> list[str]:
    """A named recipe in both dtypes: its number, its parity and teacher-forced figures."""
    import importlib.util

    from nnparity.shared import RECIPES, compare, load_dataset

    out = [f"## The {name} recipe", ""]
    chosen = RECIPES[name]
    if chosen.dataset.startswith("digits") and importlib.util.find_spec("sklearn") is None:
        return out + ["Skipped: scikit-learn (the `datasets` extra) is not installed.", ""]
    data = load_dataset(chosen.dataset)
    bits = chosen.dataset == "zen"
    metric = "bits per character" if bits else "test accuracy"
    out += [f"`nnparity compare --recipe {name}`. {RECIPE_NOTES[name]} Parameters and model "
            "state against numpy; teacher-forced: the largest relative difference of one step "
            "from numpy's snapshots.", "",
            f"| dtype | backend | {metric} | largest difference to numpy (abs / rel) "
            "| teacher-forced max rel | diagnosis |", "| --- | --- | --- | --- | --- | --- |"]
    for dtype in ("float64", "float32"):
        report = compare(chosen.spec(dtype), data)
        for backend, result in report.results.items():
            p = next((p for p in report.parity if p.backend == backend), None)
            diff, teacher, diagnosis = "(reference)", "", ""
            if p is not None:
                tensors = [d for q, d in p.differences.items()
                           if q not in ("predictions", "losses")]
                diff = (f"{max(d.max_abs for d in tensors):.1e} / "
                        f"{max(d.max_rel for d in tensors):.1e}")
                teacher = f"{max(step.max_rel for step in p.teacher):.1e}"
                diagnosis = p.diagnosis.split(":")[0]
            value = (f"{result.metrics['test_loss'] / np.log(2):.3f}" if bits
                     else f"{100 * result.metrics['test_accuracy']:.1f}%")
            out.append(f"| {dtype} | {backend} | {value} | {diff} | {teacher} | {diagnosis} |")
    return out + [""]


def data_parallel() -> list[str]:
    """Issue 16's cases on 2 replicas in every backend against one device."""
    import importlib.util

    from nnparity.shared import compare, notebook_data, notebook_spec
    from nnparity.shared.core.synthetic import uneven_shards_case

    cases = [("notebook spec, 2000 steps", notebook_spec(), notebook_data()),
             ("deeper MLP, shuffled, partial last batch (`uneven_shards_case()`)",
              *uneven_shards_case())]
    if importlib.util.find_spec("sklearn") is not None:
        from nnparity.shared import load_dataset
        from nnparity.shared.core.recipes import digits_cnn_spec

        cases.append(("digits CNN, BatchNorm and Dropout, 2 epochs",
                      digits_cnn_spec().replace(epochs=2), load_dataset("digits_images")))
    out = ["## Data-parallel training", "",
           "`compare(spec, data, replicas=2)`, float64: each backend on 2 replicas "
           "(\"x2\") against NumPy on one device and against itself on one device; the "
           "largest normwise relative difference over the final parameters and model state, "
           "the largest over the trajectory's snapshots, and the largest fraction of its "
           "rounding allowance a teacher-forced (data-parallel) step used.", "",
           "| case | comparison | parameters | trajectory | teacher-forced, used | verdict |",
           "| --- | --- | --- | --- | --- | --- |"]
    for title, spec, data in cases:
        report = compare(spec, data, replicas=2)
        for p in report.parity:
            params = max(d.max_rel for q, d in p.differences.items()
                         if q not in ("predictions", "losses"))
            trajectory = max((d.max_rel for d in p.trajectory), default=0.0)
            used = max((d.used for d in p.teacher), default=0.0)
            out.append(f"| {title} | {p.backend}{'' if ' vs ' in p.backend else ' vs numpy'} "
                       f"| {params:.1e} | {trajectory:.1e} | {used:.1e} "
                       f"| {'ok' if p.ok else 'FAILED'} |")
            title = ""                                  # the case's name on its first row
    spec, data = cases[-1][1], cases[-1][2]
    per_replica = compare(spec, data, backends=("numpy",), replicas=2, sync_batch_norm=False)
    worst = max(d.max_rel for q, d in per_replica.parity[0].differences.items()
                if q not in ("predictions", "losses"))
    out += ["", f"With per-replica BatchNorm (`sync_batch_norm=False`) on the last case, "
            f"NumPy on 2 replicas ends {worst:.2g} relative from one device "
            f"({per_replica.parity[0].diagnosis.split(';')[0]}).", ""]
    return out


def float32() -> list[str]:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "measure_float32.py")],
                          capture_output=True, text=True, check=True)
    return ["## float32", "",
            "The data behind the float32 entry of the tolerance policy: "
            "`python tools/measure_float32.py`'s output (its docstring explains the columns).",
            "", "```", done.stdout.rstrip(), "```", ""]


def performance(repeats: int) -> list[str]:
    from nnparity.shared.bench import run as bench

    result = bench.run(BACKENDS, repeats=repeats)
    nb, peers = result["notebook"], result["peers"]
    numpy_ratio = nb["numpy"] / peers["notebook loop"]
    torch_ratio = nb["torch"] / peers["torch.nn + torch.optim"]
    jax_ratio = nb["jax"] / peers["jit + lax.scan (hand-written)"]
    compute = [c["gflops"] / c["matmul_gflops"] for c in result["compute"].values()]

    def met(ok: bool) -> str:
        return "met" if ok else "not met"

    busy = ([f"**The machine was busy** (load average {START_LOAD:.1f} before the run): these "
             "timings may be slower than the code is; measure again on an idle machine.", ""]
            if START_LOAD > BUSY_LOAD else [])
    return ["## Performance", "", *busy,
            f"`nnparity bench --repeats {repeats}` (medians of {repeats} after a warm-up; "
            "what a ratio compares is timed in turn within each repetition):", "",
            "```", bench.table(result), "```", "",
            "| target (issues 6 and 14) | measured | |", "| --- | --- | --- |",
            f"| numpy ≤ 0.8 × the notebook's loop | {numpy_ratio:.2f} "
            f"| {met(numpy_ratio <= 0.8)} |",
            f"| torch ≤ 0.6 × `torch.nn` + `torch.optim` | {torch_ratio:.2f} "
            f"| {met(torch_ratio <= 0.6)} |",
            f"| jax warm ≤ 3 ms and ≤ 2 × the hand-written scan | {1e3 * nb['jax']:.1f} ms, "
            f"{jax_ratio:.2f} × | {met(nb['jax'] <= 3e-3 and jax_ratio <= 2)} |",
            f"| jax cold ≤ 1 s | {result['cold']['jax']:.2f} s "
            f"| {met(result['cold']['jax'] <= 1)} |",
            f"| compute-bound ≥ 0.8 of the matmul rate | {', '.join(f'{r:.2f}' for r in compute)} "
            f"| {met(min(compute) >= 0.8)} |",
            f"| `nnparity compare` cold ≤ 8 s | {result['compare_cli_cold']:.1f} s "
            f"| {met(result['compare_cli_cold'] <= 8)} |",
            *part_targets(result), ""]


def part_targets(result: dict) -> list[str]:
    """The targets of the per-epoch parts (the digits CNN, the row-by-row GRU, the
    transformer block; seconds per epoch, float32) as rows of the table above; a ratio
    shown without a target (the torch backend against a sequence peer) is left out."""
    from nnparity.shared.bench.run import DTYPE, PARTS

    rows = []
    for part in PARTS.values():
        ratios = result.get(part.key, {}).get("ratios", {})
        for name, (_, _, target) in part.targets.items():
            if target is None:
                continue
            r = ratios.get(name)
            measured = "not measured" if r is None else f"{r['measured']:.2f}"
            verdict = "" if r is None else ("met" if r["met"] else "not met")
            rows.append(f"| {part.title}, {DTYPE}, s/epoch: {name} "
                        f"≤ {target:g} | {measured} | {verdict} |")
    return rows


def write_readme_block(text: str) -> None:
    readme = README.read_text()
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise SystemExit(f"README.md must hold {BEGIN} ... {END} once")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    README.write_text(f"{head}{BEGIN}\n```\n$ nnparity compare\n{text}\n```\n{END}{tail}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-bench", action="store_true",
                        help="leave out nnparity bench (the Performance section says so)")
    parser.add_argument("--repeats", type=int, default=5, metavar="N")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = ["# Measured numbers", "",
            f"Generated by `python tools/measure.py` on {when}, on {cpu_name()} "
            f"({os.cpu_count()} cores visible, load average {START_LOAD:.1f} at the "
            f"start), {platform.system()}; {versions()}. "
            "Every number on this page comes from that run; the other pages link here instead "
            "of quoting them; do not edit it by hand, rerun the script. Timings on a shared "
            "machine are noisy: read the ratios, which are timed in turn within each "
            "repetition. Rounding differences move by a few ulps with the CPU and its BLAS "
            "kernels; the verdicts do not.", ""]
    body += notebook_parity() + chaotic() + digits()
    for name in RECIPE_NOTES:
        body += recipe(name)
    body += float32()
    body += data_parallel()
    body += (["## Performance", "", "Not measured in this run (`--skip-bench`).", ""]
             if args.skip_bench else performance(args.repeats))
    MEASURED.write_text("\n".join(body).rstrip() + "\n")
    write_readme_block(compare_output())
    print(f"wrote {MEASURED.relative_to(ROOT)} and README.md's compare output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
