"""assert_same_step and assert_same_trajectory: two training steps that must agree.

A step is a function ``step(params, batch) -> (loss, new_params)``: ``params`` is
everything the next step starts from (the parameters, and the optimizer's and
model's state when there is any, e.g. ``(params, opt_state)``), ``new_params``
the same tree after the step. Both are trees as ``assert_close`` takes them.
A step gets its own deep copy of ``params``, so one that updates tensors in
place (a torch optimizer) is fine; it must not keep state of its own between
calls (an optimizer held in a closure), or teacher forcing cannot hand it
another run's state. ``step_a`` is the reference: its results are the expected
ones.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import numpy as np

from nnparity.shared.core.validation import FLOAT_DTYPES, check_choice, fail
from nnparity.shared.parity.harness import diagnose
from nnparity.shared.testing.close import TreeComparison, compare_trees
from nnparity.shared.testing.trees import flatten

#: step(params, batch) -> (loss, new_params)
StepFn = Callable[[Any, Any], tuple[Any, Any]]


def _check(step_a: Any, step_b: Any, params: Any, dtype: Any) -> None:
    for name, step in (("step_a", step_a), ("step_b", step_b)):
        if not callable(step):
            fail(name, step, "a function step(params, batch) -> (loss, new_params)",
                 TypeError)
    if dtype is not None:
        check_choice("dtype", dtype, FLOAT_DTYPES)
    flatten(params, "params")                       # its leaves, before any step runs


def _run(step: StepFn, name: str, params: Any, batch: Any, k: int) -> tuple[Any, Any]:
    """One call of ``step`` on a deep copy of ``params`` (the params of step k)."""
    try:
        copied = copy.deepcopy(params)
    except Exception as exc:          # torch: a tensor that is not a graph leaf
        fail("params" if k == 0 else f"the new_params of step {k - 1}", params,
             f"a tree that copy.deepcopy can copy (return torch tensors detached: "
             f"p.detach()); copying failed: {exc}", TypeError)
    out = step(copied, batch)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"{name}(params, batch) at step {k}", out, "a pair (loss, new_params)", TypeError)
    return out[0], out[1]


def _compare(actual: tuple[Any, Any], expected: tuple[Any, Any], dtype: str | None,
             k: int, how: str) -> TreeComparison:
    """step_b's (loss, new_params) against step_a's, as one tree: "loss", "params...". """
    return compare_trees({"loss": actual[0], "params": actual[1]},
                         {"loss": expected[0], "params": expected[1]}, dtype,
                         roots=(" ".join(filter(None, ("step_b's", how, f"result at step {k}"))),
                                f"step_a's result at step {k}"))


def assert_same_step(step_a: StepFn, step_b: StepFn, params: Any, batch: Any, *,
                     dtype: str | None = None) -> None:
    """Assert that ``step_b(params, batch)`` gives ``step_a``'s loss and new params.

    Both run once from (copies of) the same ``params`` on the same ``batch``; the
    results are compared as ``assert_close({"loss": ..., "params": ...})`` does,
    ``step_a``'s being the expected ones (``dtype``: see ``assert_close``).

    There is no rounding allowance beyond the policy: the harness adds, to each of
    its teacher-forced steps, 8 times the step's rounding sensitivity measured by
    rerunning the NumPy reference with perturbed arithmetic, which a user's step
    functions do not have. In float64 the policy alone (rtol 1e-10) is about a
    million times one step's rounding except where the step itself is
    ill-conditioned (a gradient that cancels).

    Raises:
        AssertionError: the message of ``assert_close`` for the step's results.
        TypeError, ValueError: a step that is not callable or returns no pair, a
            bad ``dtype``, or a leaf of ``params`` or of a result that is not allowed.
    """
    _check(step_a, step_b, params, dtype)
    expected = _run(step_a, "step_a", params, batch, 0)
    comparison = _compare(_run(step_b, "step_b", params, batch, 0), expected, dtype, 0, "")
    if not comparison.ok:
        raise AssertionError("step_b differs from step_a in one step from the same params "
                             "and batch (step_a's results are the expected ones):\n"
                             + comparison.report())


def assert_same_trajectory(step_a: StepFn, step_b: StepFn, params: Any,
                           batches: Iterable[Any], *, dtype: str | None = None) -> None:
    """Assert that ``step_b`` trains as ``step_a`` does over ``batches``, and if not,
    say whether the code differs or the run only amplifies rounding.

    Two things are checked at every step k (batch k, the first step is 0):

    - free running: each function steps from its own previous result, both from
      ``params``; loss k and the new params are compared;
    - teacher forcing: ``step_b`` steps from ``step_a``'s own params at step k and
      must give ``step_a``'s loss and new params.

    Each comparison is ``assert_close``'s (``dtype``: see there). As the harness
    does, a teacher-forced step that disagrees is an implementation difference,
    and free runs that separate while every teacher-forced step agrees are
    rounding amplified by the training (chaotic training: a run that passes with
    fewer batches or a smaller learning rate). The teacher-forced steps have no
    rounding allowance beyond the policy (see ``assert_same_step``).

    Raises:
        AssertionError: the diagnosis (``diagnose``'s sentence), the first failing
            step and ``assert_close``'s message for it (the teacher-forced step for
            an implementation difference, the free-running one for amplification);
            or a structure that differs, naming the step.
        TypeError, ValueError: as ``assert_same_step``; ``batches`` not an iterable
            of batches or empty.
    """
    _check(step_a, step_b, params, dtype)
    if isinstance(batches, (str, bytes, Mapping)) or not isinstance(batches, Iterable):
        fail("batches", batches, "an iterable of batches (a list, a generator)", TypeError)
    batches = list(batches)
    if not batches:
        fail("batches", batches, "at least one batch")
    teacher, free = [], []
    first: dict[str, TreeComparison] = {}
    params_a = params_b = params
    for k, batch in enumerate(batches):
        expected = _run(step_a, "step_a", params_a, batch, k)
        forced = _run(step_b, "step_b", params_a, batch, k)
        t = _compare(forced, expected, dtype, k, "teacher-forced")
        own = forced if k == 0 else _run(step_b, "step_b", params_b, batch, k)
        f = t if k == 0 else _compare(own, expected, dtype, k, "free-running")
        for how, c in (("teacher", t), ("free", f)):
            if not c.ok:
                first.setdefault(how, c)
        teacher.append(t.at_step(k))
        free.append(f.at_step(k))
        params_a, params_b = expected[1], own[1]
    if not first:
        return
    first_out = next((d.step for d in free if not d.ok), None)
    bad = [d.step for d in teacher if not d.ok]
    closest = max(teacher, key=lambda d: d.used)
    shown = sorted({int(i) for i in np.linspace(0, len(free) - 1, min(6, len(free)))})
    lines = [
        f"step_b does not follow step_a over {len(batches)} batches: "
        + (f"implementation difference, first at step {bad[0]}" if bad else
           f"amplification of rounding (chaotic training), first out at step {first_out}"),
        "diagnosis: " + diagnose(first_out is None, teacher, first_out,
                                 allowance="under the policy"),
        "teacher-forced (step_b from step_a's own params at every step, held to the policy "
        "alone, without the harness's rounding allowance): "
        + (f"{len(bad)} of {len(teacher)} steps disagree, from step {bad[0]} (which uses "
           f"{teacher[bad[0]].used:.3g} of its allowance)" if bad else
           f"all {len(teacher)} agree, the closest call used {closest.used:.3g} of its "
           f"allowance at step {closest.step}"),
        "free-running (each from its own params): "
        + (f"first out at step {first_out}" if first_out is not None else "within tolerance")
        + "; used fraction by step {" + ", ".join(f"{free[i].step}: {free[i].used:.2g}"
                                                   for i in shown) + "}",
        (f"the teacher-forced step {bad[0]}" if bad else f"the free-running step {first_out}")
        + " (step_a's results are the expected ones):",
        first["teacher" if bad else "free"].report()]
    raise AssertionError("\n".join(lines))
