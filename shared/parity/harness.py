"""The parity harness: train one spec in several backends and explain how they differ.

For each backend against the reference, ``compare`` measures three things,
every tensor judged by the one policy of ``nnparity.shared.core.tolerance``:

- free-running parity: final parameters, test predictions and every step's loss;
- the trajectory: the parameters every ``record_every`` steps, giving the
  error-growth curve and the first step that leaves tolerance (the optimizer
  state is recorded too, for teacher forcing);
- teacher-forced parity: at sampled snapshots of the reference's run, every
  backend takes one step (loss, gradients, new parameters, new optimizer state)
  from the reference's own parameters and state, on the same batch; each
  tensor is compared normwise with the step's measured rounding allowance
  (``step_difference``, ``nnparity.shared.parity.rounding``).

Both runs must hold the same snapshot steps and as many losses (``incomplete``):
a backend that drops data fails, it is never compared on fewer points. A real
implementation difference shows in the teacher-forced step, from the first
sampled step on. When every teacher-forced step agrees but the free-running
trajectories leave tolerance, the backends differ only by the run amplifying
rounding (chaotic training). A divergence (``DivergenceError``) is a result
too: parity holds only if every backend diverged at the same step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from nnparity.backends import as_arrays, train
from nnparity.backends.contract import StepResult
from nnparity.backends.registry import BACKENDS, check_backend, get_backend
from nnparity.shared.core.data import Dataset, batch_plan, check_fits, inputs_as
from nnparity.shared.core.divergence import DivergenceError
from nnparity.shared.core.optimizers import OptimizerState, state_buffers
from nnparity.shared.core.replicas import Replicas, check_replicas
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tolerance import (POLICY, Difference, Element, Tolerance, difference,
                                            tensorwise_difference)
from nnparity.shared.core.trajectory import Snapshot, default_record_every
from nnparity.shared.core.tree import named_leaves
from nnparity.shared.core.validation import check_int, fail
from nnparity.shared.parity.rounding import step_sensitivity

#: teacher-forced steps are taken at no more than this many snapshots
MAX_TEACHER_STEPS = 50


@dataclass(frozen=True)
class StepDifference:
    """A difference at one global step: a free-running snapshot's parameters, or a
    teacher-forced step's outputs (loss, gradients, new parameters, new optimizer
    state), judged tensor by tensor (``tensorwise_difference``).

    used: the largest fraction of its allowance a tensor uses (ok is used <= 1).
    worst: the element of the tensor with the largest ``used``.
    sensitivity: teacher-forced steps only: the step's measured rounding
        sensitivity, the largest over tensors of sensitivity / max|e| (0 for
        snapshots, which get no rounding allowance).
    """

    step: int
    max_abs: float
    max_rel: float
    ok: bool
    used: float = 0.0
    worst: Element | None = None
    sensitivity: float = 0.0


@dataclass(frozen=True)
class BackendParity:
    """One backend against the reference.

    Attributes:
        differences: final quantities ("0.weight", "0.bias", ..., "predictions", "losses")
            -> ``Difference``; empty when either side diverged.
        trajectory: the error-growth curve, one ``StepDifference`` per snapshot.
        teacher: one ``StepDifference`` per teacher-forced step.
        first_step_out: the first step whose loss or snapshot leaves tolerance.
        diverged_at: the step this backend diverged at, or None.
        diagnosis: one sentence: ok, amplification, implementation or divergence.
        run: the compared run's name in ``ParityReport.results``: the backend's, or
            "torch x2" for a data-parallel run on 2 replicas.
        against: the run it is compared against: the report's reference, or, for
            a data-parallel run, the same backend's single-device run (with
            per-replica BatchNorm: the reference's data-parallel run).
        counted: whether ``ok`` counts in the report's verdict (False only for a
            per-replica BatchNorm run against one device, which is meant to differ).

    ``backend`` names the comparison: ``run``, or "torch x2 vs torch" when it is
    not against the reference.
    """

    backend: str
    differences: dict[str, Difference]
    trajectory: tuple[StepDifference, ...]
    teacher: tuple[StepDifference, ...]
    first_step_out: int | None
    diverged_at: int | None
    diagnosis: str
    ok: bool
    seconds: float
    run: str = ""
    against: str = ""
    counted: bool = True


@dataclass(frozen=True)
class ParityReport:
    """The outcome of ``compare``.

    Attributes:
        spec, reference, tolerance: what was compared, against what, how strictly.
        record_every: the trajectory's spacing in steps.
        results: run name -> ``TrainResult`` (missing for a diverged run); a run is
            named by its backend, "torch x2" for a data-parallel one.
        predictions: run name -> (n_test, k) test predictions.
        parity: one ``BackendParity`` per non-reference run (and, with replicas, one
            more per data-parallel run against its backend's single-device run).
        reference_diverged_at: the step the reference diverged at, or None.
        replicas: the replicas of the data-parallel runs (1: none).
        sync_batch_norm: whether their BatchNorm statistics were the global batch's.
        run_seconds: run name -> seconds its ``train`` took (every run, diverged
            ones included).
        run_diverged_at: run name -> the step it diverged at, or None (every run).
    """

    spec: NetworkSpec
    reference: str
    tolerance: Tolerance
    record_every: int
    results: dict
    predictions: dict[str, np.ndarray]
    parity: tuple[BackendParity, ...]
    reference_diverged_at: int | None
    reference_seconds: float
    run_seconds: dict[str, float]
    run_diverged_at: dict[str, int | None]
    replicas: int = 1
    sync_batch_norm: bool = True

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parity if p.counted)

    def __str__(self) -> str:
        lines = [f"parity against {self.reference} ({self.spec.dtype}: {self.tolerance}; a "
                 f"tensor is ok when max|a-e| <= atol + rtol*max|e|, each loss when "
                 f"|a-e| <= atol + rtol*|e|)"]
        width = max([12] + [len(q) for p in self.parity for q in p.differences])
        named = max([8] + [len(p.backend) for p in self.parity])
        if any(p.differences for p in self.parity):
            lines.append(f"{'backend':<{named}} {'quantity':<{width}} {'max abs':>10} "
                         f"{'max rel':>10} {'used':>8}  ok")
        for p in self.parity:
            for quantity, d in p.differences.items():
                lines.append(f"{p.backend:<{named}} {quantity:<{width}} {d.max_abs:>10.2e} "
                             f"{d.max_rel:>10.2e} {d.used:>8.2g}  {'yes' if d.ok else 'NO'}")
            for quantity, d in p.differences.items():
                if not d.ok:
                    lines.append(f"  {p.backend} {quantity} worst: {d.worst}")
        if self.replicas > 1:
            batch_norm = ("synchronised BatchNorm" if self.sync_batch_norm else
                          "per-replica BatchNorm, which differs from one device wherever "
                          "the network has BatchNorm")
            lines.append(f"data parallel: the runs 'x{self.replicas}' trained on "
                         f"{self.replicas} replicas, {batch_norm}")
        lines.append(f"trajectory: a snapshot every {self.record_every} steps; "
                     f"teacher-forced steps from {self.reference}'s snapshots"
                     + (" (a row 'A vs B': from B's)"
                        if any(" vs " in p.backend for p in self.parity) else ""))
        for p in self.parity:
            if p.trajectory:
                curve = ", ".join(f"{d.step}: {d.max_rel:.1e}" for d in _sample(p.trajectory, 5))
                lines.append(f"  {p.backend}: free-running max rel by step {{{curve}}}")
                out = next((d for d in p.trajectory if not d.ok), None)
                if out is not None:
                    lines.append(f"  {p.backend}: first snapshot out at step {out.step}, "
                                 f"worst {out.worst}")
            if p.teacher:
                worst = max(p.teacher, key=lambda d: d.used)
                blurred = sum(d.sensitivity >= 1 for d in p.teacher)
                lines.append(f"  {p.backend}: {len(p.teacher)} teacher-forced steps, the "
                             f"closest call at step {worst.step} used {worst.used:.2g} of its "
                             f"allowance (max rel {worst.max_rel:.1e}, rounding sensitivity "
                             f"{worst.sensitivity:.1e})" + (
                                 f"; in {blurred} of them rounding alone changes some tensor "
                                 f"by its own size" if blurred else ""))
        timing = ", ".join(f"{run} {s:.3f}" for run, s in self.run_seconds.items())
        lines.append(f"train seconds: {timing}")
        for p in self.parity:
            lines.append(f"diagnosis {p.backend}: {p.diagnosis}")
        lines.append("verdict: " + ("PARITY OK" if self.ok else "PARITY FAILED: " + ", ".join(
            p.backend for p in self.parity if p.counted and not p.ok)))
        return "\n".join(lines)


def _sample(points: Sequence, count: int) -> list:
    """About ``count`` evenly spaced items of ``points``, always the first and last."""
    if len(points) <= count:
        return list(points)
    idx = np.unique(np.linspace(0, len(points) - 1, count).round().astype(int))
    return [points[i] for i in idx]


def named_params(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A tree's tensors by flat name (torch's state-dict keys), each after ``prefix``:
    {"0.weight": ..., "0.bias": ..., "2.weight": ...}."""
    return {prefix + name: value for name, value in named_leaves(tree)}


def named_state(state: OptimizerState) -> dict[str, np.ndarray]:
    """An optimizer state as named arrays: "step" and every buffer's tensors
    ("momentum_buffer 0.weight", ...), buffers in sorted order."""
    named = {"step": np.asarray(state.step)}
    for buffer in sorted(state.buffers):
        named.update(named_params(state.buffers[buffer], f"{buffer} "))
    return named


def named_step(out: StepResult) -> dict[str, np.ndarray]:
    """One step's result as named arrays: "loss", "grad 0.weight", ...,
    "0.weight", ..., "model 1.running_mean", ..., "step", "momentum_buffer 0.weight", ..."""
    return {"loss": np.asarray(out.loss), **named_params(out.grads, "grad "),
            **named_params(out.params), **named_params(out.model_state, "model "),
            **named_state(out.opt_state)}


def quantities(params, model_state, predictions: np.ndarray,
               losses: np.ndarray) -> dict[str, np.ndarray]:
    """The final arrays the harness compares, by name: 0.weight, 0.bias, ...,
    model buffers ("model 1.running_mean", ...), predictions, losses."""
    return {**named_params(params), **named_params(model_state, "model "),
            "predictions": predictions, "losses": losses}


def final_difference(quantity: str, actual, expected, tol: Tolerance) -> Difference:
    """A final quantity: every step's loss elementwise (each is its own number),
    every other tensor normwise."""
    if quantity == "losses":
        return difference(actual, expected, tol, name=quantity)
    return tensorwise_difference({quantity: actual}, {quantity: expected}, tol)


def step_difference(step: int, actual: dict, expected: dict, tol: Tolerance,
                    sensitivity: dict[str, float] | None = None) -> StepDifference:
    """Named tensors at one step, each judged normwise (with its rounding
    allowance when ``sensitivity`` is given)."""
    d = tensorwise_difference(actual, expected, tol, sensitivity)
    relative = 0.0
    for name, s in (sensitivity or {}).items():
        e = np.asarray(expected[name], dtype=np.float64)
        scale = float(np.abs(e[np.isfinite(e)]).max()) if np.isfinite(e).any() else 0.0
        if s > 0:
            relative = max(relative, s / scale if scale > 0 else np.inf)
    return StepDifference(step, d.max_abs, d.max_rel, d.ok, d.used, d.worst, relative)


def trajectory_difference(actual: Snapshot, expected: Snapshot, tol: Tolerance) -> StepDifference:
    """A free-running snapshot's parameters and model state, tensor by tensor, normwise.

    The optimizer's buffers are judged in the teacher-forced steps, where their
    own rounding sensitivity is measured; along the run they matter through the
    parameters they move. (A buffer of pure rounding noise, 1e-19 / eps, differs
    from backend to backend by 1e-11 while the parameters agree to 1e-15.)
    """
    def named(snap: Snapshot) -> dict[str, np.ndarray]:
        return {**named_params(snap.params), **named_params(snap.model_state, "model ")}
    return step_difference(expected.step, named(actual), named(expected), tol)


def _first_loss_out(losses: np.ndarray, reference: np.ndarray, tol: Tolerance) -> int | None:
    for step, (a, e) in enumerate(zip(losses, reference, strict=True)):
        if not difference(a, e, tol).ok:
            return step
    return None


def _steps_text(steps: Sequence[int]) -> str:
    shown = ", ".join(map(str, steps[:10]))
    return shown + (f", ... ({len(steps)} in all)" if len(steps) > 10 else "")


def incomplete(name: str, result, reference: str, expected) -> str | None:
    """Why ``result`` cannot be paired with the reference's run step by step
    (missing or extra snapshots, a different number of losses), or None."""
    ours = [s.step for s in result.snapshots]
    theirs = [s.step for s in expected.snapshots]
    problems = []
    if ours != theirs:
        missing = sorted(set(theirs) - set(ours))
        extra = sorted(set(ours) - set(theirs))
        text = f"{name} recorded {len(ours)} snapshots, {reference} {len(theirs)}"
        if missing:
            text += f"; missing steps {_steps_text(missing)}"
        if extra:
            text += f"; extra steps {_steps_text(extra)}"
        if not missing and not extra:
            text += "; the same steps in another order or repeated"
        problems.append(text)
    if len(result.losses) != len(expected.losses):
        problems.append(f"{name} returned {len(result.losses)} losses, {reference} "
                        f"{len(expected.losses)}")
    if not problems:
        return None
    return "incomplete: " + "; ".join(problems) + " (nothing is compared on missing steps)"


def sampled_sensitivities(spec, data, snapshots) -> dict[int, dict[str, float]]:
    """The rounding sensitivity of the step from each sampled snapshot (see
    ``nnparity.shared.parity.rounding``), by step."""
    x, y = as_arrays(spec, data.x_train, data.y_train)
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    return {snap.step: step_sensitivity(spec, snap.params, snap.model_state, snap.opt_state,
                                        x[plan.rows(snap.step)], y[plan.rows(snap.step)],
                                        seed=snap.step, named_outputs=named_step)
            for snap in _sample(snapshots, MAX_TEACHER_STEPS)}


def teacher_forced(spec, data, snapshots, reference_module, module, tol,
                   sensitivities: dict[int, dict[str, float]] | None = None,
                   replicas: Replicas | None = None,
                   reference_replicas: Replicas | None = None) -> list[StepDifference]:
    """One step of ``module`` and of ``reference_module`` (each data-parallel on its
    ``replicas`` if given, all steps in one launch) from each sampled snapshot,
    compared tensor by tensor with each step's rounding allowance (``sensitivities``
    by step, from ``sampled_sensitivities``; none when not given)."""
    x, y = as_arrays(spec, data.x_train, data.y_train)
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    sampled = _sample(snapshots, MAX_TEACHER_STEPS)
    starts = [(snap.params, snap.model_state, snap.opt_state, x[plan.rows(snap.step)],
               y[plan.rows(snap.step)]) for snap in sampled]
    expected = reference_module.steps(spec, starts, reference_replicas)
    actual = module.steps(spec, starts, replicas)
    return [step_difference(snap.step, named_step(a), named_step(e), tol,
                            sensitivities[snap.step] if sensitivities is not None else None)
            for snap, a, e in zip(sampled, actual, expected, strict=True)]


def diagnose(parity_ok: bool, teacher: Sequence[StepDifference], first_out: int | None,
             allowance: str = "within its rounding allowance") -> str:
    """One sentence: ok, amplification, or an implementation difference (naming the
    first disagreeing teacher-forced step's worst element). ``allowance`` says what a
    teacher-forced step was held to (``nnparity.shared.testing`` has no rounding
    allowance for users' steps)."""
    bad_teacher = [d for d in teacher if not d.ok]
    if bad_teacher and bad_teacher[0] is teacher[0]:
        return (f"implementation differs: step {teacher[0].step} already disagrees; "
                f"worst {teacher[0].worst}")
    if bad_teacher:
        first = bad_teacher[0]
        return (f"the teacher-forced step at step {first.step} disagrees though step "
                f"{teacher[0].step} agrees: an implementation difference that shows later "
                f"(a buffer's update, a rarely hit branch); worst {first.worst}")
    if not parity_ok:
        where = (f" from step {first_out}" if first_out is not None
                 else " after the last snapshot (only the final results leave tolerance)")
        return (f"amplification: every teacher-forced step agrees {allowance}; "
                f"the free-running trajectories separate{where}")
    return "ok: within tolerance; every teacher-forced step agrees"


def compare(spec: NetworkSpec, data: Dataset,
            backends: Sequence[str] = ("numpy", "torch", "jax"),
            reference: str = "numpy", record_every: int | None = None, *,
            replicas: int = 1, sync_batch_norm: bool = True) -> ParityReport:
    """Train ``spec`` in every backend and compare each against ``reference``.

    Compares every parameter, the predictions on ``data.x_test`` and the loss
    trajectory under ``POLICY[spec.dtype]``; records parameters and optimizer
    state every ``record_every`` steps (default: ``default_record_every``, at
    most 200 snapshots and 64 MiB) and runs teacher-forced steps at up to 50
    of the reference's snapshots.

    With ``replicas`` > 1, every backend trains data-parallel on that many replicas
    (run "torch x2"; ``train``'s ``replicas`` and ``sync_batch_norm``), and each such
    run is compared against the reference's single-device run and against its own
    backend's single-device run, with the same checks; a teacher-forced step is
    then a data-parallel step.
    """
    check_fits(spec, data)
    if isinstance(backends, str) or not isinstance(backends, Sequence) or not backends:
        fail("backends", backends, f"a non-empty sequence of names from {list(BACKENDS)}",
             TypeError)
    for name in backends:                          # unknown or missing: fail before any import
        check_backend(name)
    if len(set(backends)) != len(backends):
        fail("backends", list(backends), "each backend at most once")
    if reference not in backends:
        fail("reference", reference, f"one of the compared backends {list(backends)}")
    split = check_replicas(replicas, sync_batch_norm, spec, data.x_train.shape[0])
    total_steps = spec.epochs * -(-data.x_train.shape[0] // spec.batch_size)
    if record_every is None:
        record_every = default_record_every(total_steps, spec.n_parameters,
                                            len(state_buffers(spec.optimizer)),
                                            np.dtype(spec.dtype).itemsize)
    check_int("record_every", record_every, 1)
    modules = {name: get_backend(name) for name in backends}
    runs, comparisons = plan_runs(backends, reference, split)
    tol = POLICY[spec.dtype]
    results, predictions, named, seconds = {}, {}, {}, {}
    diverged: dict[str, int | None] = {}
    for run in runs.values():
        start = time.perf_counter()
        try:
            result = train(spec, data, backend=run.backend, record_every=record_every,
                           replicas=1 if run.replicas is None else run.replicas.count,
                           sync_batch_norm=sync_batch_norm)
        except DivergenceError as exc:
            diverged[run.name] = exc.step
            seconds[run.name] = time.perf_counter() - start
            continue
        seconds[run.name] = time.perf_counter() - start
        diverged[run.name] = None
        results[run.name] = result
        x_test = inputs_as(spec, data.x_test)
        predictions[run.name] = modules[run.backend].predict(spec, result.params,
                                                             result.model_state, x_test)
        named[run.name] = quantities(result.params, result.model_state, predictions[run.name],
                                     result.losses)

    parity = []
    sensitivities: dict[str, dict[int, dict[str, float]]] = {}   # by run, measured once
    for name, against, counted in comparisons:
        run, other = runs[name], runs[against]
        title = name if against == reference else f"{name} vs {against}"
        aside = "" if counted else PER_REPLICA_ASIDE
        if diverged[name] is not None or diverged[against] is not None:
            same = diverged[name] == diverged[against]
            parity.append(BackendParity(
                title, {}, (), (), None, diverged[name],
                aside + _divergence_diagnosis(name, diverged[name], against, diverged[against]),
                same, seconds[name], name, against, counted))
            continue
        ref, res = results[against], results[name]
        differences = {q: final_difference(q, named[name][q], e, tol)
                       for q, e in named[against].items()}
        unpaired = incomplete(name, res, against, ref)
        if unpaired is not None:
            parity.append(BackendParity(title, differences, (), (), None, None, aside + unpaired,
                                        False, seconds[name], name, against, counted))
            continue
        trajectory = tuple(
            trajectory_difference(s, r, tol)
            for s, r in zip(res.snapshots, ref.snapshots, strict=True))
        outs = [d.step for d in trajectory if not d.ok]
        loss_out = _first_loss_out(res.losses, ref.losses, tol)
        first_out = min([s for s in outs + [loss_out] if s is not None], default=None)
        if against not in sensitivities:
            sensitivities[against] = sampled_sensitivities(spec, data, ref.snapshots)
        teacher = tuple(teacher_forced(spec, data, ref.snapshots, modules[other.backend],
                                       modules[run.backend], tol, sensitivities[against],
                                       run.replicas, other.replicas))
        final_ok = all(d.ok for d in differences.values()) and all(d.ok for d in trajectory)
        ok = final_ok and all(d.ok for d in teacher)
        parity.append(BackendParity(title, differences, trajectory, teacher, first_out, None,
                                    aside + diagnose(final_ok, teacher, first_out), ok,
                                    seconds[name], name, against, counted))
    return ParityReport(spec=spec, reference=reference, tolerance=tol, record_every=record_every,
                        results=results, predictions=predictions, parity=tuple(parity),
                        reference_diverged_at=diverged[reference],
                        reference_seconds=seconds[reference],
                        replicas=1 if split is None else split.count,
                        sync_batch_norm=sync_batch_norm, run_seconds=seconds,
                        run_diverged_at=diverged)


@dataclass(frozen=True)
class Run:
    """One training run of ``compare``: its name ("torch", or "torch x2" on 2
    replicas), its backend, and its replicas (None: one device)."""

    name: str
    backend: str
    replicas: Replicas | None = None


#: what the one comparison that is expected to differ says first
PER_REPLICA_ASIDE = ("not counted in the verdict (per-replica BatchNorm is meant to differ "
                     "from one device wherever the network has BatchNorm): ")


def plan_runs(backends: Sequence[str], reference: str, split: Replicas | None
              ) -> tuple[dict[str, Run], list[tuple[str, str, bool]]]:
    """The runs ``compare`` trains, by name, and its comparisons: (run, the run it is
    compared against, counted in the verdict).

    - One device: every backend against the reference.
    - Synchronised replicas: every backend on one device against the reference, and
      every data-parallel run against the reference and against its own backend on
      one device (all of them must agree).
    - Per-replica BatchNorm: the reference's data-parallel run against its
      single-device run, to show how far apart they are (not counted), and every
      other data-parallel run against the reference's (the backends must agree on
      per-replica semantics)."""
    single = {name: Run(name, name) for name in backends}
    if split is None:
        return single, [(name, reference, True) for name in backends if name != reference]
    many = {name: Run(f"{name} x{split.count}", name, split) for name in backends}
    others = [name for name in backends if name != reference]
    if not split.sync_batch_norm:
        runs = {run.name: run for run in [single[reference], *many.values()]}
        return runs, ([(many[reference].name, reference, False)]
                      + [(many[name].name, many[reference].name, True) for name in others])
    runs = {run.name: run for run in [*single.values(), *many.values()]}
    return runs, ([(name, reference, True) for name in others]
                  + [(many[name].name, reference, True) for name in backends]
                  + [(many[name].name, name, True) for name in others])


def _divergence_diagnosis(name, step, reference, reference_step) -> str:
    def said(who, at):
        return f"{who} diverged at step {at}" if at is not None else f"{who} did not diverge"
    verdict = "same step" if step == reference_step else "MISMATCH"
    return f"divergence: {said(name, step)}, {said(reference, reference_step)} ({verdict})"
