"""Measure float32 parity of the torch and jax backends against numpy (issue 5).

A measurement, not a test: it prints numbers from which the float32 entry of
``nnparity.shared.core.tolerance.POLICY`` is set. For a suite of specs (activations,
losses, optimizers, depths; modest epochs), trained in float32 by all three
backends, it measures against numpy:

(a) teacher-forced steps: from numpy's float32 snapshots (about 25 per run),
    one step of each backend vs one step of numpy on the same batch, compared
    as ``shared.harness.step_difference`` does without its rounding
    allowance: the loss, every gradient, parameter and buffer tensor,
    normwise (max|a - e| / max|e|); the per-part columns give whole vectors.
    Reported twice: over every tensor with max|e| > 0 ("no floor"), and as the
    harness reports it under POLICY["float32"], where vectors with max|e| <
    atol/rtol are judged by atol only ("policy");
(b) free-running: the final parameters after the whole run, elementwise max
    abs and max rel (rel over |e| >= atol/rtol of POLICY["float32"]) and
    normwise per tensor; the per-step losses and test predictions elementwise;
    and ``compare``'s verdict under POLICY["float32"].

For scale it also gives numpy float32 against numpy float64 (the float32
rounding error itself), normwise on the final parameters.

Run: python tools/measure_float32.py   (about 15 s; needs torch and jax;
torch is pinned to one thread)
"""
from __future__ import annotations

import sys
import time

import numpy as np

from nnparity.backends import as_arrays, get_backend, train
from nnparity.shared import (POLICY, SGD, Adam, AdamW, Dataset, NetworkSpec, RMSprop, Tolerance,
                             compare, notebook_data, notebook_spec)
from nnparity.shared.core.data import batch_plan
from nnparity.shared.parity.harness import named_step, step_difference
from nnparity.shared.core.synthetic import binary, classification, regression
from nnparity.shared.core.tolerance import difference

TOL32 = POLICY["float32"]
NO_FLOOR = Tolerance(rtol=1.0, atol=0.0)        # max_rel over every vector with max|e| > 0
OTHERS = ("torch", "jax")


def suite() -> dict[str, tuple[NetworkSpec, Dataset]]:
    """name -> (float32 spec, data)."""
    f32 = dict(dtype="float32")
    return {
        "notebook-relu-sgd": (notebook_spec().replace(**f32), notebook_data()),
        "tanh-2h-sgd-momentum-mse": (NetworkSpec(
            sizes=(3, 16, 16, 1), activation="tanh", init="xavier_uniform",
            optimizer=SGD(lr=0.05, momentum=0.9), batch_size=4, epochs=100, seed=1, **f32),
            regression(12, 3, 1, seed=1)),
        "relu-2h-adam-xent": (NetworkSpec(
            sizes=(4, 32, 32, 3), activation="relu", init="he_normal", loss="cross_entropy",
            optimizer=Adam(lr=1e-3), batch_size=16, epochs=40, seed=2, shuffle=True, **f32),
            classification(64, 4, 3, seed=2)),
        "sigmoid-1h-rmsprop-bce": (NetworkSpec(
            sizes=(5, 8, 2), activation="sigmoid", init="xavier_uniform",
            loss="bce_with_logits", optimizer=RMSprop(lr=1e-3), batch_size=8, epochs=60,
            seed=3, **f32), binary(24, 5, 2, seed=3)),
        "gelu-2h-adamw-huber": (NetworkSpec(
            sizes=(3, 16, 8, 2), activation="gelu", init="xavier_uniform", loss="huber",
            optimizer=AdamW(lr=3e-3, weight_decay=0.05), batch_size=5, epochs=50, seed=4,
            **f32), regression(20, 3, 2, seed=4)),
        "elu-3h-nesterov-wd-mae": (NetworkSpec(
            sizes=(2, 8, 8, 8, 1), activation="elu", init="he_normal", loss="mae",
            optimizer=SGD(lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3),
            batch_size=4, epochs=60, seed=5, **f32), regression(14, 2, 1, seed=5)),
        "softplus-1h-rmsprop-centered-mse": (NetworkSpec(
            sizes=(3, 10, 1), activation="softplus", init="xavier_uniform",
            optimizer=RMSprop(lr=1e-3, momentum=0.5, centered=True), batch_size=6,
            epochs=60, seed=6, shuffle=True, **f32), regression(18, 3, 1, seed=6)),
        "leaky-relu-4h-adam-mse": (NetworkSpec(
            sizes=(4, 12, 12, 12, 12, 1), activation="leaky_relu", init="he_normal",
            optimizer=Adam(lr=1e-3, weight_decay=1e-4), batch_size=8, epochs=40, seed=7,
            **f32), regression(32, 4, 1, seed=7)),
        "silu-1h-sgd-momentum-xent": (NetworkSpec(
            sizes=(6, 20, 4), activation="silu", init="xavier_uniform", loss="cross_entropy",
            optimizer=SGD(lr=0.05, momentum=0.5), batch_size=10, epochs=50, seed=8, **f32),
            classification(40, 6, 4, seed=8)),
        "mixed-2h-adam-mse": (NetworkSpec(
            sizes=(3, 16, 16, 2), activation=("selu", "softsign"), init="he_normal",
            optimizer=Adam(lr=2e-3), batch_size=7, epochs=50, seed=9, shuffle=True, **f32),
            regression(20, 3, 2, seed=9)),
        "hardtanh-wide-sgd-mse": (NetworkSpec(
            sizes=(8, 64, 1), activation="hardtanh", init="xavier_uniform",
            optimizer=SGD(lr=0.02), batch_size=16, epochs=40, seed=10, **f32),
            regression(48, 8, 1, seed=10)),
    }


def tensors(tree) -> list[np.ndarray]:
    """Every array in a nest of lists, tuples and dicts (dicts in sorted key order,
    the step count included), as float64 arrays."""
    if isinstance(tree, dict):
        return [t for key in sorted(tree) for t in tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in tensors(item)]
    return [np.asarray(tree, dtype=np.float64)]


def normwise(actual, expected) -> float:
    """max over tensors of max|a - e| / max|e| (tensors with max|e| > 0)."""
    worst = 0.0
    for a, e in zip(tensors(actual), tensors(expected), strict=True):
        scale = float(np.abs(e).max())
        if scale > 0:
            worst = max(worst, float(np.abs(a - e).max()) / scale)
    return worst


def vector(tree) -> np.ndarray:
    return np.concatenate([t.ravel() for t in tensors(tree)])


def step_parts(out) -> dict[str, np.ndarray]:
    """One step's parts as whole vectors: loss, grads, params, each buffer."""
    parts = {"loss": np.asarray(out.loss, dtype=np.float64), "grads": vector(out.grads),
             "params": vector(out.params)}
    buffers = out.opt_state.buffers
    parts.update({k: vector(buffers[k]) for k in sorted(buffers)})
    return parts


def used_normwise(a, e) -> float:
    """Fraction of POLICY["float32"] used, normwise: max|a-e| / (atol + rtol max|e|)."""
    return float(np.abs(a - e).max()) / (TOL32.atol + TOL32.rtol * float(np.abs(e).max()))


def used_elementwise(a, e) -> float:
    """Fraction of POLICY["float32"] used, elementwise: max |a-e| / (atol + rtol |e|)."""
    a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
    return float((np.abs(a - e) / (TOL32.atol + TOL32.rtol * np.abs(e))).max())


def teacher_parts(spec, data, snapshots, name):
    """Worst teacher-forced normwise rel: overall (no floor), as compare reports it under
    the policy (per tensor), per part (whole vectors), and the policy used."""
    ref, module = get_backend("numpy"), get_backend(name)
    x, y = as_arrays(spec, data.x_train, data.y_train)
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    worst = {"no floor": 0.0, "policy": 0.0, "loss": 0.0, "grads": 0.0, "params": 0.0,
             "state": 0.0, "used": 0.0}
    for snap in snapshots:
        rows = plan.rows(snap.step)
        e = ref.step(spec, snap.params, snap.model_state, snap.opt_state, x[rows], y[rows])
        a = module.step(spec, snap.params, snap.model_state, snap.opt_state, x[rows], y[rows])
        named_a, named_e = named_step(a), named_step(e)
        worst["no floor"] = max(worst["no floor"],
                                step_difference(snap.step, named_a, named_e, NO_FLOOR).max_rel)
        worst["policy"] = max(worst["policy"],
                              step_difference(snap.step, named_a, named_e, TOL32).max_rel)
        pa, pe = step_parts(a), step_parts(e)
        for part in pe:
            scale = float(np.abs(pe[part]).max())
            rel = float(np.abs(pa[part] - pe[part]).max()) / scale if scale > 0 else 0.0
            key = part if part in ("loss", "grads", "params") else "state"
            worst[key] = max(worst[key], rel)
            worst["used"] = max(worst["used"], used_normwise(pa[part], pe[part]))
    return worst


def measure(name, spec, data):
    steps = spec.epochs * -(-data.x_train.shape[0] // spec.batch_size)
    every = max(1, steps // 25)
    report = compare(spec, data, record_every=every)
    ref = report.results["numpy"]
    f64 = train(spec.replace(dtype="float64"), data, backend="numpy")
    rows = []
    for p in report.parity:
        res = report.results[p.backend]
        teacher = teacher_parts(spec, data, ref.snapshots, p.backend)
        d = difference(vector(res.params), vector(ref.params), TOL32)
        rows.append(dict(
            spec=name, backend=p.backend, steps=steps,
            t_nofloor=teacher["no floor"], t_policy=teacher["policy"],
            t_loss=teacher["loss"], t_grads=teacher["grads"], t_params=teacher["params"],
            t_state=teacher["state"], t_used=teacher["used"],
            p_abs=d.max_abs, p_rel=d.max_rel, p_norm=normwise(res.params, ref.params),
            loss_rel=p.differences["losses"].max_rel,
            pred_rel=p.differences["predictions"].max_rel,
            f_used=max(used_elementwise(vector(res.params), vector(ref.params)),
                       used_elementwise(res.losses, ref.losses),
                       used_elementwise(report.predictions[p.backend],
                                        report.predictions["numpy"]),
                       max(used_elementwise(vector((s.params, s.opt_state.buffers)),
                                            vector((r.params, r.opt_state.buffers)))
                           for s, r in zip(res.snapshots, ref.snapshots, strict=True))),
            ok=p.ok, first_out=p.first_step_out,
            f32_vs_f64=normwise(ref.params, f64.params)))
    return rows


def main() -> int:
    import torch
    # one thread: the differences do not depend on it (see tests/test_determinism.py), and
    # torch's 2-thread pool on a 2-core machine crawls when another process is busy
    torch.set_num_threads(1)
    start = time.perf_counter()
    print(f"float32 parity against numpy; policy {TOL32}; teacher = normwise max rel per "
          f"step (worst over ~25 steps per run); free-running = final parameters")
    header = (f"{'spec':<34} {'be':<5} {'steps':>5} | {'teach':>7} {'t(pol)':>7} "
              f"{'loss':>7} {'grads':>7} {'params':>7} {'state':>7} {'t use':>5} | "
              f"{'p abs':>7} {'p rel':>7} {'p norm':>7} {'losses':>7} {'preds':>7} "
              f"{'f use':>5} | {'ok':>3} {'out@':>5} | {'32v64':>7}")
    print(header)
    print("-" * len(header))
    rows = []
    for name, (spec, data) in suite().items():
        for r in measure(name, spec, data):
            rows.append(r)
            print(f"{r['spec']:<34} {r['backend']:<5} {r['steps']:>5} | {r['t_nofloor']:7.1e} "
                  f"{r['t_policy']:7.1e} {r['t_loss']:7.1e} {r['t_grads']:7.1e} "
                  f"{r['t_params']:7.1e} {r['t_state']:7.1e} {r['t_used']:5.2f} | "
                  f"{r['p_abs']:7.1e} {r['p_rel']:7.1e} {r['p_norm']:7.1e} "
                  f"{r['loss_rel']:7.1e} {r['pred_rel']:7.1e} {r['f_used']:5.2f} | "
                  f"{'yes' if r['ok'] else 'NO':>3} "
                  f"{str(r['first_out']):>5} | {r['f32_vs_f64']:7.1e}")
    print()
    print("columns: teach = teacher-forced normwise max rel, every vector (no floor); "
          "t(pol) = the same as compare() reports it under the policy (vectors with "
          "max|e| < atol/rtol excluded from rel); loss/grads/params/state = teacher-forced "
          "normwise rel of that vector (state: worst buffer); t use = fraction of the policy "
          "the teacher-forced steps use, max|a-e| / (atol + rtol max|e|) (ok <= 1); "
          "p abs / p rel = final parameters elementwise (rel where "
          "|e| >= atol/rtol); p norm = final parameters normwise per tensor; losses / preds = "
          "elementwise max rel of per-step losses and test predictions; f use = fraction of "
          "the policy the free-running checks use (final params, losses, predictions, every "
          "snapshot), max |a-e| / (atol + rtol |e|); ok = compare() under "
          "the policy; out@ = first step out of tolerance; 32v64 = numpy float32 vs numpy "
          "float64, final parameters normwise.")
    print()
    for key, label in [("t_nofloor", "teacher-forced step, normwise (no floor)"),
                       ("t_policy", "teacher-forced step, normwise (as compare reports)"),
                       ("t_grads", "teacher-forced gradient, normwise"),
                       ("t_state", "teacher-forced optimizer buffer, normwise"),
                       ("t_used", "teacher-forced, fraction of the policy used"),
                       ("p_abs", "free-running final params, max abs"),
                       ("p_rel", "free-running final params, max rel (elementwise)"),
                       ("p_norm", "free-running final params, normwise"),
                       ("loss_rel", "free-running per-step losses, max rel"),
                       ("pred_rel", "free-running predictions, max rel"),
                       ("f_used", "free-running, fraction of the policy used"),
                       ("f32_vs_f64", "numpy float32 vs float64, final params normwise")]:
        worst = max(rows, key=lambda r: r[key])
        print(f"worst {label:<52} {worst[key]:.2e}  ({worst['spec']}, {worst['backend']})")
    failed = [f"{r['spec']}/{r['backend']}" for r in rows if not r["ok"]]
    print(f"not ok under {TOL32}: {', '.join(failed) if failed else 'none'}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
