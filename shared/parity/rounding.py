"""How sensitive one training step is to rounding: Monte Carlo arithmetic on the
NumPy reference.

Two honest implementations of a step differ only by rounding: the order of a
sum, a transcendental function a few ulps apart (XLA's float64 ``tanh`` is up
to 6 ulps from NumPy's on some CPUs). How far that moves the step's outputs is a
property of the step at that state: tiny for a well-conditioned step, large for
a saturated state whose gradient cancels (1 - tanh^2 near 1), and for a buffer
built from a gradient that is pure rounding noise.

``step_sensitivity`` measures it the way Monte Carlo arithmetic does (Parker,
1997; the "mca" mode of Verificarlo): the NumPy backend's ``step`` runs on
arrays whose every floating-point operation -- its inputs and its result -- is
moved by a random whole number of ulps in [-ulps, ulps], ``samples`` times, and
each output tensor's sensitivity is the largest change from the unperturbed
step seen. The tolerance policy lets a teacher-forced step differ by a small
multiple of it (``nnparity.shared.core.tolerance``). The random draws are seeded, so
a verdict is reproducible; they never touch the backends' own runs.

Only NumPy ufuncs are perturbed (arithmetic, matmul, reductions, elementwise
functions); indexing, copies and ``np.where`` selections are exact and stay so.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from nnparity.backends.registry import get_backend
from nnparity.shared.core.tolerance import ROUNDING_SAMPLES, ROUNDING_ULPS

_INTS = {2: np.int16, 4: np.int32, 8: np.int64}


class _State:
    rng: np.random.Generator | None = None
    ulps: int = ROUNDING_ULPS


def move_ulps(array: np.ndarray, k: np.ndarray) -> None:
    """Move every finite, non-zero float of ``array`` by ``k`` ulps (an integer array
    of the same size), in place; zeros, infinities, NaNs and non-floats stay.

    Adding k to a float's bit pattern moves its magnitude by k ulps, across
    binade boundaries too; a move that would change the sign or leave the finite
    range is not made.
    """
    if array.dtype.kind != "f" or array.size == 0:
        return
    flat = array.reshape(-1)                                # a view when contiguous
    bits = flat.view(_INTS[array.dtype.itemsize])
    moved = (bits + np.asarray(k).reshape(-1).astype(bits.dtype)).view(array.dtype)
    keep = (np.isfinite(moved) & np.isfinite(flat) & (flat != 0)
            & (np.signbit(moved) == np.signbit(flat)))
    np.copyto(flat, moved, where=keep)
    if not np.shares_memory(flat, array):                  # reshape had to copy
        array[...] = flat.reshape(array.shape)


def _rng() -> np.random.Generator:
    """The generator of the ``rounding_sensitivity`` run in progress."""
    assert _State.rng is not None, "jittered arithmetic outside a rounding run"
    return _State.rng


def jitter(array: np.ndarray, rng: np.random.Generator, ulps: int) -> None:
    """Move every finite, non-zero float of ``array`` (in place) by a random whole
    number of ulps in [-ulps, ulps] (``move_ulps``)."""
    if array.dtype.kind == "f" and array.size:
        move_ulps(array, rng.integers(-ulps, ulps + 1, size=array.size))


def _jittered_copy(value):
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        copy = np.array(value.view(np.ndarray))
        jitter(copy, _rng(), _State.ulps)
        return copy
    if isinstance(value, np.floating):
        return _jittered_copy(np.array(value))[()]
    return value.view(np.ndarray) if isinstance(value, np.ndarray) else value


class Jittered(np.ndarray):
    """An array whose ufunc operations round at random (inside ``perturbed_rounding``):
    the float inputs and the result of each are moved by up to ``ulps`` ulps."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if method == "at":                 # ufunc.at(target, indices, ...): in place, so the
            target = inputs[0]             # target is written, not copied, then jittered
            plain = target.view(np.ndarray) if isinstance(target, np.ndarray) else target
            rest = tuple(_jittered_copy(value) for value in inputs[1:])
            ufunc.at(plain, *rest, **kwargs)
            if isinstance(plain, np.ndarray):
                jitter(plain, _rng(), _State.ulps)
            return None
        inputs = tuple(_jittered_copy(value) for value in inputs)
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, np.ndarray) else o
                                  for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            for o in kwargs["out"]:
                if isinstance(o, np.ndarray):
                    jitter(o, _rng(), _State.ulps)
            return out[0] if len(out) == 1 else out
        results = result if isinstance(result, tuple) else (result,)
        wrapped = tuple(_jittered_result(r) for r in results)
        return wrapped if isinstance(result, tuple) else wrapped[0]

    def __array_function__(self, func, types, args, kwargs):
        result = super().__array_function__(func, types, args, kwargs)
        return _jittered_result(result) if func in _PRODUCTS else result


#: the non-ufunc NumPy functions that do arithmetic (sums of products)
_PRODUCTS = frozenset({np.vdot, np.dot, np.inner, np.tensordot, np.einsum})


def _jittered_result(result):
    if isinstance(result, np.ndarray):
        jitter(result, _rng(), _State.ulps)
        return result.view(Jittered)
    if isinstance(result, np.floating):
        return _jittered_copy(result)
    return result


@contextmanager
def perturbed_rounding(rng: np.random.Generator, ulps: int = ROUNDING_ULPS) -> Iterator[None]:
    """Within the block, operations on ``Jittered`` arrays round at random."""
    saved = _State.rng, _State.ulps
    _State.rng, _State.ulps = rng, ulps
    try:
        yield
    finally:
        _State.rng, _State.ulps = saved


def jittered(tree):
    """A copy of a nest of lists, tuples and dicts of arrays as ``Jittered`` arrays
    (ints, such as the optimizer's step count, stay as they are)."""
    if isinstance(tree, dict):
        return {key: jittered(value) for key, value in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):       # a NamedTuple
        return type(tree)(*(jittered(item) for item in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(jittered(item) for item in tree)
    if isinstance(tree, np.ndarray):
        return np.array(tree).view(Jittered)
    return tree


def step_sensitivity(spec, params, model_state, opt_state, x: np.ndarray, y: np.ndarray, *,
                     seed: int, named_outputs, samples: int = ROUNDING_SAMPLES,
                     ulps: int = ROUNDING_ULPS) -> dict[str, float]:
    """Each output tensor's sensitivity to rounding, for one step from (params,
    model_state, opt_state) on the batch (x, y): max over ``samples`` perturbed
    runs of max |perturbed - exact| (inf where a perturbed run turns a finite
    value non-finite).

    ``named_outputs`` maps a step's ``StepResult`` to named arrays;
    the runs are the NumPy backend's ``step``, seeded by ``seed``.
    """
    numpy_backend = get_backend("numpy")
    with np.errstate(all="ignore"):
        exact = named_outputs(numpy_backend.step(spec, params, model_state, opt_state, x, y))
        spread = dict.fromkeys(exact, 0.0)
        for sample in range(samples):
            with perturbed_rounding(np.random.default_rng([seed, sample]), ulps):
                out = numpy_backend.step(spec, jittered(params), jittered(model_state),
                                         jittered(opt_state), jittered(x), jittered(y))
            for name, value in named_outputs(out).items():
                a = np.asarray(value, dtype=np.float64).view(np.ndarray)
                e = np.asarray(exact[name], dtype=np.float64)
                both = np.isfinite(a) & np.isfinite(e)
                if not np.array_equal(both, np.isfinite(e)):
                    spread[name] = np.inf
                elif both.any():
                    spread[name] = max(spread[name], float(np.abs(a[both] - e[both]).max()))
    return spread
