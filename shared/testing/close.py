"""assert_close: two trees of tensors equal under the project's tolerance policy.

Each float tensor is judged as the harness judges a tensor
(``tensorwise_difference``): max|a - e| <= atol + rtol * max|e|, with (rtol,
atol) = ``POLICY[dtype]``; NaN matches NaN, an infinity the same infinity.
Integer and bool tensors must be equal element by element.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnparity.shared.core.tolerance import (POLICY, Difference, Element, Tolerance,
                                            tensorwise_difference)
from nnparity.shared.core.validation import FLOAT_DTYPES, check_choice, fail
from nnparity.shared.parity.harness import StepDifference
from nnparity.shared.testing.trees import (Path, flatten, index_text, leaf_names, path_name,
                                           structure_problems)
from nnparity.shared.testing.ulps import ulp_text

#: at most this many lines list the tensors (or structure differences) in a message
SUMMARY_LINES = 20


@dataclass(frozen=True)
class LeafResult:
    """One tensor's comparison: its name (``names``'s or its path), path, shape,
    expected dtype and ``Difference`` (``used`` is inf for a differing exact tensor)."""

    name: str
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    difference: Difference
    ulps: str

    def line(self, width: int) -> str:
        d = self.difference
        return (f"  {self.name:<{width}} {str(self.shape):<14} max|a-e| {d.max_abs:<9.3g} "
                f"used {d.used:<9.3g} {'ok' if d.ok else 'FAIL'}")


@dataclass(frozen=True)
class TreeComparison:
    """Every tensor of a tree against the expected tree's, under ``tolerance``."""

    dtype: str
    tolerance: Tolerance
    leaves: tuple[LeafResult, ...]

    @property
    def ok(self) -> bool:
        return all(leaf.difference.ok for leaf in self.leaves)

    @property
    def worst(self) -> LeafResult:
        """The tensor that uses the largest fraction of its allowance (the first one
        in tree order on a tie)."""
        return max(self.leaves, key=lambda leaf: leaf.difference.used)

    def at_step(self, step: int) -> StepDifference:
        """This comparison as the harness's record of one step (for ``diagnose``)."""
        d = [leaf.difference for leaf in self.leaves]
        return StepDifference(step, max(x.max_abs for x in d), max(x.max_rel for x in d),
                              self.ok, self.worst.difference.used, self.worst.difference.worst)

    def report(self) -> str:
        """The failure message: the worst tensor in detail, then one line per tensor."""
        failing = [leaf for leaf in self.leaves if not leaf.difference.ok]
        worst, element = self.worst, self.worst.difference.worst
        assert element is not None, "a tensor with elements always names its worst one"
        called = f"'{worst.name}' (path {path_name(worst.path)})" if (
            worst.name != path_name(worst.path)) else path_name(worst.path)
        index = f"[{', '.join(map(str, element.index))}]" if element.index else "() (a scalar)"
        lines = [f"{len(failing)} of {len(self.leaves)} tensors differ under the {self.dtype} "
                 f"policy ({self.tolerance}: a float tensor matches when max|a - e| <= atol + "
                 f"rtol*max|e|; integer and bool tensors must be equal)",
                 f"worst: tensor {called}, index {index}",
                 f"  expected {element.expected!r}",
                 f"  actual   {element.actual!r}",
                 f"  distance {worst.ulps}",
                 f"  failed   {element.criterion}",
                 "tensors (name, shape, max|a-e|, used fraction of the allowance, verdict):"]
        return "\n".join(lines + summary(self.leaves, failing))


def summary(leaves: tuple[LeafResult, ...], failing: list[LeafResult]) -> list[str]:
    """At most ``SUMMARY_LINES`` tensor lines in tree order, failing tensors first to
    be shown, and how many more there are."""
    shown = failing[:SUMMARY_LINES]
    shown += [leaf for leaf in leaves if leaf.difference.ok][:SUMMARY_LINES - len(shown)]
    kept = [leaf for leaf in leaves if any(leaf is s for s in shown)]
    width = min(40, max(len(leaf.name) for leaf in kept))
    lines = [leaf.line(width) for leaf in kept]
    hidden = len(leaves) - len(kept)
    if hidden:
        hidden_failing = len(failing) - sum(not leaf.difference.ok for leaf in kept)
        lines.append(f"  ... {hidden} more tensors ("
                     + (f"{hidden_failing} FAIL)" if hidden_failing else "all ok)"))
    return lines


def choose_dtype(dtype: Any, expected: dict[Path, np.ndarray], root: str) -> str:
    """The policy's dtype: ``dtype`` if given, else float32 when any float leaf of the
    expected tree is float32, float64 otherwise. A float32 leaf cannot be held to
    the float64 policy."""
    single = next((p for p, e in expected.items() if e.dtype == np.float32), None)
    if dtype == "float64" and single is not None:
        fail("dtype", dtype, f"'float32' or None: {root}{index_text(single)} is float32, "
             "which cannot be held to the float64 policy")
    return dtype or ("float32" if single is not None else "float64")


def exact_difference(actual: np.ndarray, expected: np.ndarray, name: str) -> Difference:
    """Integer or bool tensors: equal element by element; the worst element is the
    first that differs, the gap counted exactly (Python integers)."""
    differ = actual != expected
    if not differ.any():
        return Difference(0.0, 0.0, True, 0.0, Element(
            name, (0,) * actual.ndim, expected.flat[0].item() if expected.size else 0,
            actual.flat[0].item() if actual.size else 0, "exact: equal"))
    index = tuple(int(i) for i in np.argwhere(differ)[0])
    gap = np.abs(actual[differ].astype(object) - expected[differ].astype(object)).max()
    return Difference(float(gap), 0.0, False, np.inf, Element(
        name, index, expected[index].item(), actual[index].item(),
        f"exact: integer and bool tensors must be equal; {int(differ.sum())} of "
        f"{differ.size} elements differ"))


def compare_trees(actual: Any, expected: Any, dtype: Any = None, names: Any = None,
                  roots: tuple[str, str] = ("actual", "expected")) -> TreeComparison:
    """Check both trees and compare them leaf by leaf (see ``assert_close``). Bad
    leaves, ``dtype`` or ``names`` raise TypeError/ValueError naming them (``roots``
    names the two trees); a structure that differs raises AssertionError."""
    if dtype is not None:
        check_choice("dtype", dtype, FLOAT_DTYPES)
    expected_leaves, expected_nodes = flatten(expected, roots[1])
    actual_leaves, actual_nodes = flatten(actual, roots[0])
    if not expected_leaves:
        fail(roots[1], expected, "a tree with at least one leaf to compare", ValueError)
    chosen = choose_dtype(dtype, expected_leaves, roots[1])
    named = leaf_names(list(expected_leaves), names)
    problems = structure_problems(actual_leaves, actual_nodes, expected_leaves, expected_nodes,
                                  mixed_floats=dtype == "float32")
    if problems:
        more = len(problems) - SUMMARY_LINES
        raise AssertionError(f"{roots[0]} and {roots[1]} differ in structure:\n  "
                             + "\n  ".join(problems[:SUMMARY_LINES])
                             + (f"\n  ... {more} more" if more > 0 else ""))
    tol = POLICY[chosen]
    results = []
    for name, (path, e) in zip(named, expected_leaves.items(), strict=True):
        a = actual_leaves[path]
        if e.dtype.kind == "f":
            d = tensorwise_difference({name: a}, {name: e}, tol)
        else:
            d = exact_difference(a, e, name)
        if d.worst is None:                        # no element, or every one non-finite
            d = Difference(d.max_abs, d.max_rel, d.ok, d.used, Element(
                name, (), np.nan, np.nan, "nothing to compare: no finite expected element"))
        w = d.worst
        assert w is not None
        distance = (ulp_text(w.actual, w.expected, e.dtype) if e.dtype.kind == "f" else
                    f"|a - e| = {d.max_abs:g} (compared exactly)" if not d.ok else "0")
        results.append(LeafResult(name, path, e.shape, e.dtype, d, distance))
    return TreeComparison(chosen, tol, tuple(results))


def assert_close(actual: Any, expected: Any, *, dtype: str | None = None,
                 names: Any = None) -> None:
    """Assert that two trees of tensors are equal under nnparity's tolerance policy.

    Args:
        actual, expected: trees (see ``nnparity.shared.testing.trees``): dicts,
            lists and tuples of NumPy arrays or scalars, Python numbers, torch
            tensors (detached, moved to the CPU) or JAX arrays. Both must have
            the same structure: the same keys (in any order), lengths, shapes, and
            dtypes (integer widths may differ; float widths only when ``dtype`` is
            "float32").
        dtype: "float64" or "float32", the policy to apply; None (default):
            float32 if any float leaf of ``expected`` is float32, else float64.
        names: what the messages call each leaf: None (its path,
            ``layers[0]['weight']``), a sequence with one name per leaf of
            ``expected`` in its order (depth first, dicts in their key order), or a
            mapping from such paths to names (leaves left out keep their path).

    Each float tensor passes when max|a - e| <= atol + rtol * max|e| with
    ``POLICY[dtype]`` (float64: rtol 1e-10, atol 1e-12; float32: 1e-4, 1e-5);
    integer and bool tensors must be equal.

    Raises:
        AssertionError: naming the worst tensor (by the fraction of its allowance
            used), its worst element's index, expected and actual value, their
            distance in ulps of the expected dtype and the failed criterion, then
            one line per tensor; or naming the paths where the structures differ.
        TypeError, ValueError: a leaf that is not allowed (float16, bfloat16,
            complex, strings, ...), a bad ``dtype`` or ``names``, an empty tree.
    """
    comparison = compare_trees(actual, expected, dtype, names)
    if not comparison.ok:
        raise AssertionError(comparison.report())
