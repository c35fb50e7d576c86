"""The parity harness: train one spec in several backends and explain how they differ.

For each backend against the reference, ``compare`` measures three things:

- free-running parity: final parameters, test predictions and every step's loss;
- the trajectory: parameters and optimizer state every ``record_every`` steps,
  giving the error-growth curve and the first step that leaves tolerance;
- teacher-forced parity: at sampled snapshots of the reference's run, every
  backend takes one step (gradients, new parameters, new optimizer state) from
  the reference's own parameters and state, on the same batch; each quantity
  is compared normwise (``teacher_difference``).

A real implementation difference shows in the teacher-forced step, from the
first sampled step on. When every teacher-forced step agrees but the
free-running trajectories leave tolerance, the backends differ only by the
run amplifying rounding (chaotic training). A divergence (``DivergenceError``)
is a result too: parity holds only if every backend diverged at the same step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .data import Dataset, batch_plan, check_fits
from .divergence import DivergenceError
from .optimizers import state_buffers
from .spec import NetworkSpec
from .tolerance import POLICY, Difference, Tolerance, difference, tensorwise_difference
from .trajectory import default_record_every
from .validation import check_int, fail

#: teacher-forced steps are taken at no more than this many snapshots
MAX_TEACHER_STEPS = 50


@dataclass(frozen=True)
class StepDifference:
    """A difference at one global step: the trajectory's (free-running) or a
    teacher-forced step's, over all parameters (and optimizer state, gradients)."""

    step: int
    max_abs: float
    max_rel: float
    ok: bool


@dataclass(frozen=True)
class BackendParity:
    """One backend against the reference.

    Attributes:
        differences: final quantities ("W0", "b0", ..., "predictions", "losses")
            -> ``Difference``; empty when either side diverged.
        trajectory: the error-growth curve, one ``StepDifference`` per snapshot.
        teacher: one ``StepDifference`` per teacher-forced step.
        first_step_out: the first step whose loss or snapshot leaves tolerance.
        diverged_at: the step this backend diverged at, or None.
        diagnosis: one sentence: ok, amplification, implementation or divergence.
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


@dataclass(frozen=True)
class ParityReport:
    """The outcome of ``compare``.

    Attributes:
        spec, reference, tolerance: what was compared, against what, how strictly.
        record_every: the trajectory's spacing in steps.
        results: backend name -> ``TrainResult`` (missing for a diverged backend).
        predictions: backend name -> (n_test, sizes[-1]) test predictions.
        parity: one ``BackendParity`` per non-reference backend.
        reference_diverged_at: the step the reference diverged at, or None.
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

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parity)

    def __str__(self) -> str:
        lines = [f"parity against {self.reference} "
                 f"({self.spec.dtype}: {self.tolerance}; ok when |a-e| <= atol + rtol*|e|)"]
        if any(p.differences for p in self.parity):
            lines.append(f"{'backend':<8} {'quantity':<12} {'max abs':>10} {'max rel':>10}  ok")
        for p in self.parity:
            for quantity, d in p.differences.items():
                lines.append(f"{p.backend:<8} {quantity:<12} {d.max_abs:>10.2e} "
                             f"{d.max_rel:>10.2e}  {'yes' if d.ok else 'NO'}")
        lines.append(f"trajectory: a snapshot every {self.record_every} steps; "
                     f"teacher-forced steps from {self.reference}'s snapshots")
        for p in self.parity:
            if p.trajectory:
                curve = ", ".join(f"{d.step}: {d.max_rel:.1e}" for d in _sample(p.trajectory, 5))
                lines.append(f"  {p.backend}: free-running max rel by step {{{curve}}}")
            if p.teacher:
                worst = max(p.teacher, key=lambda d: d.max_rel)
                lines.append(f"  {p.backend}: {len(p.teacher)} teacher-forced steps, worst max "
                             f"rel {worst.max_rel:.1e} at step {worst.step}")
        timing = ", ".join([f"{self.reference} {self.reference_seconds:.3f}"]
                           + [f"{p.backend} {p.seconds:.3f}" for p in self.parity])
        lines.append(f"train seconds: {timing}")
        for p in self.parity:
            lines.append(f"diagnosis {p.backend}: {p.diagnosis}")
        lines.append("verdict: " + ("PARITY OK" if self.ok else "PARITY FAILED: " + ", ".join(
            p.backend for p in self.parity if not p.ok)))
        return "\n".join(lines)


def _sample(points: Sequence, count: int) -> list:
    """About ``count`` evenly spaced items of ``points``, always the first and last."""
    if len(points) <= count:
        return list(points)
    idx = np.unique(np.linspace(0, len(points) - 1, count).round().astype(int))
    return [points[i] for i in idx]


def quantities(params, predictions: np.ndarray, losses: np.ndarray) -> dict[str, np.ndarray]:
    """The final arrays the harness compares, by name: W0, b0, W1, b1, ..., predictions, losses."""
    named = {}
    for layer, (w, b) in enumerate(params):
        named[f"W{layer}"] = w
        named[f"b{layer}"] = b
    named["predictions"] = predictions
    named["losses"] = losses
    return named


def tensors(tree) -> list[np.ndarray]:
    """Every array in a nest of lists, tuples and dicts (dicts in sorted key order,
    so two optimizer states line up buffer by buffer), as float64 arrays."""
    if isinstance(tree, dict):
        return [t for key in sorted(tree) for t in tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in tensors(item)]
    return [np.asarray(tree, dtype=np.float64)]


def trajectory_difference(step: int, actual, expected, tol: Tolerance) -> StepDifference:
    """Elementwise, as the final parameters: the free-running snapshots' difference."""
    ravel = lambda tree: np.concatenate([t.ravel() for t in tensors(tree)])  # noqa: E731
    d = difference(ravel(actual), ravel(expected), tol)
    return StepDifference(step, d.max_abs, d.max_rel, d.ok)


def teacher_difference(step: int, actual, expected, tol: Tolerance) -> StepDifference:
    """One step's (loss, grads, params, state), each quantity as one vector and
    normwise: the loss, the gradient, the new parameters, each optimizer buffer.

    Whole vectors, not layer by layer: a saturated layer's gradient is tiny and
    cancels (1 - tanh^2), so its own relative error is large while its share of
    the step is not. A wrong rule moves the step by far more than rtol anyway.
    """
    def parts(out):
        loss, grads, params, state = out
        vector = lambda tree: np.concatenate([t.ravel() for t in tensors(tree)])  # noqa: E731
        return ([np.asarray(loss, dtype=np.float64), vector(grads), vector(params)]
                + [vector(state[k]) for k in sorted(state)])
    d = tensorwise_difference(parts(actual), parts(expected), tol)
    return StepDifference(step, d.max_abs, d.max_rel, d.ok)


def _first_loss_out(losses: np.ndarray, reference: np.ndarray, tol: Tolerance) -> int | None:
    for step, (a, e) in enumerate(zip(losses, reference)):
        if not difference(a, e, tol).ok:
            return step
    return None


def teacher_forced(spec, data, snapshots, reference_module, module, tol) -> list[StepDifference]:
    """One step of ``module`` and of ``reference_module`` from each snapshot, compared."""
    from nnparity.backends import as_arrays

    x, y = as_arrays(spec, data.x_train, data.y_train)
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    points = []
    for snap in _sample(snapshots, MAX_TEACHER_STEPS):
        rows = plan.rows(snap.step)
        expected = reference_module.step(spec, snap.params, snap.state, x[rows], y[rows])
        actual = module.step(spec, snap.params, snap.state, x[rows], y[rows])
        points.append(teacher_difference(snap.step, actual, expected, tol))
    return points


def diagnose(parity_ok: bool, teacher: Sequence[StepDifference], first_out: int | None) -> str:
    bad_teacher = [d for d in teacher if not d.ok]
    if bad_teacher and bad_teacher[0] is teacher[0]:
        return (f"implementation differs: step {teacher[0].step} already disagrees "
                f"(max abs {teacher[0].max_abs:.1e}, max rel {teacher[0].max_rel:.1e})")
    if bad_teacher:
        first = bad_teacher[0]
        return (f"the teacher-forced step at step {first.step} disagrees (max abs "
                f"{first.max_abs:.1e}, max rel {first.max_rel:.1e}) though step "
                f"{teacher[0].step} agrees: an implementation "
                f"difference that shows later (a buffer's update, a rarely hit branch) or an "
                f"ill-conditioned state")
    worst = max((d.max_rel for d in teacher), default=0.0)
    if not parity_ok:
        where = (f" from step {first_out}" if first_out is not None
                 else " after the last snapshot (only the final results leave tolerance)")
        return (f"amplification: every teacher-forced step agrees (max rel {worst:.1e}); "
                f"the free-running trajectories separate{where}")
    return f"ok: within tolerance; teacher-forced steps agree to {worst:.1e}"


def compare(spec: NetworkSpec, data: Dataset,
            backends: Sequence[str] = ("numpy", "torch", "jax"),
            reference: str = "numpy", record_every: int | None = None) -> ParityReport:
    """Train ``spec`` in every backend and compare each against ``reference``.

    Compares every parameter, the predictions on ``data.x_test`` and the loss
    trajectory under ``POLICY[spec.dtype]``; records parameters and optimizer
    state every ``record_every`` steps (default: ``default_record_every``, at
    most 200 snapshots and 64 MiB) and runs teacher-forced steps at up to 50
    of the reference's snapshots.
    """
    from nnparity.backends import BACKENDS, get_backend, train

    check_fits(spec, data)
    if isinstance(backends, str) or not isinstance(backends, Sequence) or not backends:
        fail("backends", backends, f"a non-empty sequence of names from {list(BACKENDS)}",
             TypeError)
    modules = {name: get_backend(name) for name in backends}   # unknown or missing: fail now
    if len(set(backends)) != len(backends):
        fail("backends", list(backends), "each backend at most once")
    if reference not in backends:
        fail("reference", reference, f"one of the compared backends {list(backends)}")
    total_steps = spec.epochs * -(-data.x_train.shape[0] // spec.batch_size)
    if record_every is None:
        n_params = sum(o * i + o for i, o in zip(spec.sizes[:-1], spec.sizes[1:]))
        record_every = default_record_every(total_steps, n_params,
                                            len(state_buffers(spec.optimizer)),
                                            np.dtype(spec.dtype).itemsize)
    check_int("record_every", record_every, 1)

    tol = POLICY[spec.dtype]
    results, predictions, named, seconds, diverged = {}, {}, {}, {}, {}
    for name in backends:
        start = time.perf_counter()
        try:
            result = train(spec, data, backend=name, record_every=record_every)
        except DivergenceError as exc:
            diverged[name] = exc.step
            seconds[name] = time.perf_counter() - start
            continue
        seconds[name] = time.perf_counter() - start
        diverged[name] = None
        results[name] = result
        x_test = data.x_test.astype(spec.dtype)
        predictions[name] = modules[name].predict(spec, result.params, x_test)
        named[name] = quantities(result.params, predictions[name], result.losses)

    parity = []
    for name in backends:
        if name == reference:
            continue
        if diverged[name] is not None or diverged[reference] is not None:
            same = diverged[name] == diverged[reference]
            parity.append(BackendParity(
                name, {}, (), (), None, diverged[name],
                _divergence_diagnosis(name, diverged[name], reference, diverged[reference]),
                same, seconds[name]))
            continue
        ref, res = results[reference], results[name]
        differences = {q: difference(named[name][q], e, tol) for q, e in named[reference].items()}
        trajectory = tuple(
            trajectory_difference(s.step, (s.params, s.state), (r.params, r.state), tol)
            for s, r in zip(res.snapshots, ref.snapshots))
        outs = [d.step for d in trajectory if not d.ok]
        loss_out = _first_loss_out(res.losses, ref.losses, tol)
        first_out = min([s for s in outs + [loss_out] if s is not None], default=None)
        teacher = tuple(teacher_forced(spec, data, ref.snapshots, modules[reference],
                                       modules[name], tol))
        final_ok = all(d.ok for d in differences.values()) and all(d.ok for d in trajectory)
        ok = final_ok and all(d.ok for d in teacher)
        parity.append(BackendParity(name, differences, trajectory, teacher, first_out, None,
                                    diagnose(final_ok, teacher, first_out), ok, seconds[name]))
    return ParityReport(spec=spec, reference=reference, tolerance=tol, record_every=record_every,
                        results=results, predictions=predictions, parity=tuple(parity),
                        reference_diverged_at=diverged[reference],
                        reference_seconds=seconds[reference])


def _divergence_diagnosis(name, step, reference, reference_step) -> str:
    def said(who, at):
        return f"{who} diverged at step {at}" if at is not None else f"{who} did not diverge"
    verdict = "same step" if step == reference_step else "MISMATCH"
    return f"divergence: {said(name, step)}, {said(reference, reference_step)} ({verdict})"
