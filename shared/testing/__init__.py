"""nnparity.shared.testing: the harness's checks as plain pytest assertions, for
users' own equivalence tests (a model ported from one framework to another).

- ``assert_close(actual, expected)``: two trees of tensors (dicts, lists and
  tuples of NumPy, torch or JAX arrays) equal under the tolerance policy,
  each tensor normwise, as the harness judges it;
- ``assert_same_step(step_a, step_b, params, batch)``: one training step
  ``step(params, batch) -> (loss, new_params)`` of each gives the same loss and
  new parameters;
- ``assert_same_trajectory(step_a, step_b, params, batches)``: the two train
  alike over many batches, free running and teacher-forced; a failure says
  whether the code differs or the run amplifies rounding.

NumPy only: torch and JAX objects are recognised by their type's module and
never imported here. docs/testing.md shows a worked example.
"""
from __future__ import annotations

from nnparity.shared.testing.close import assert_close
from nnparity.shared.testing.steps import StepFn, assert_same_step, assert_same_trajectory

__all__ = ["assert_close", "assert_same_step", "assert_same_trajectory", "StepFn"]
