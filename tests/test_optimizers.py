"""Optimizers: our three hand-written backends against torch.optim and optax.

Oracles, all in float64, judged with ``POLICY["float64"]`` only:

1. ``torch.optim``: the same network written in plain torch (leaf tensors from
   ``init_params``, the losses from ``torch.nn.functional``, the batches from
   ``epoch_order``) trained with ``torch.optim.<Opt>(params, **the same args)``;
   every parameter, every step's loss, every state buffer and the step count
   must match, for every optimizer, non-default settings of every argument,
   and several losses, in all three backends (the optimizer x loss grid beyond
   its diagonal is slow).
2. First steps, from equations evaluated in this file on a hand-computed
   gradient (a linear layer under mse, so the gradient is closed form).
3. ``optax`` (a jnp loss, ``jax.grad``, float64) where optax has the same rule;
   where it does not, a test shows the difference is real. Each optax run compiles
   its own step, so these are slow tests (``python -m pytest -m slow``).
4. Negative controls: a wrong update rule must fail the torch.optim comparison.
5. Validation, JSON round trips and torch.optim's defaults.

How optax 0.2.8 differs from torch.optim (and from ``nnparity.shared.core.optimizers``),
each difference shown by ``test_optax_rule_differs`` and each equivalence by
``test_matches_optax``:

Measured on this file's workload (3-5-4-2 network, 60 steps, float64): where
the rules are the same, the largest difference from optax is 2.9e-15 absolute
(3e-13 relative) in the parameters; the differing rules below move some
parameter by the amount given in brackets.

- SGD: ``optax.sgd(lr, momentum, nesterov)`` is torch's SGD with dampening=0.
  optax's trace starts at zero, so its first trace is g: the same "buffer
  starts at g" as torch. optax has no ``dampening``, so dampening != 0 has no
  optax equivalent [0.31 for dampening 0.3]. Weight decay is
  ``optax.chain(optax.add_decayed_weights(wd), optax.sgd(...))``.
- Adam: ``optax.adam(lr, b1, b2, eps, eps_root=0.0)`` is torch's Adam (eps
  outside the square root, both moments bias-corrected). ``eps_root > 0`` adds
  a second epsilon inside the square root, which torch does not have
  [2.3e-6 for eps_root 1e-8].
  L2 decay (torch's ``Adam(weight_decay=wd)``) is
  ``optax.chain(optax.add_decayed_weights(wd), optax.adam(...))``.
- AdamW: ``optax.adamw(lr, b1, b2, eps, weight_decay=wd)`` equals torch's AdamW,
  but optax applies the decay inside the update, ``p <- p - lr (adam + wd p)``,
  where torch does ``p <- p (1 - lr wd) - lr adam``: the same number up to
  rounding (matches within the float64 policy). optax's default weight_decay
  is 1e-4, torch's is 1e-2, so ``optax.adamw(1e-3)`` is not ``AdamW()``
  [5.7e-4].
- RMSprop: ``optax.rmsprop(lr)`` with its defaults is not torch's
  ``RMSprop(lr)`` [0.32]. Two defaults differ: ``decay=0.9`` where torch's
  ``alpha`` is 0.99 [0.32 alone], and ``eps_in_sqrt=True``, i.e.
  g / sqrt(v + eps) where torch has g / (sqrt(v) + eps) [2.2e-3 alone, eps
  1e-8]. Two options have no torch counterpart: ``initial_scale`` (the square
  average starts there; torch starts at 0, as optax's default; TF1 used 1)
  [0.52 for 1.0] and ``bias_correction=True`` [0.36]. With
  ``optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False)`` (and
  ``initial_scale=0``, ``bias_correction=False``, the defaults) it equals torch
  for plain, centered and momentum RMSprop. Its momentum trace accumulates the
  learning-rate-scaled step (trace = -lr * torch's momentum_buffer), equal for
  a constant learning rate. Weight decay via ``add_decayed_weights`` as above.
"""
from __future__ import annotations

import functools
import inspect
import json
import re
from dataclasses import MISSING, fields
from typing import NamedTuple

import numpy as np
import pytest

from nnparity.backends import train
from nnparity.backends.numpy import optimizers as numpy_optimizers
from nnparity.shared import POLICY, SGD, Adam, AdamW, Dataset, NetworkSpec, RMSprop, init_params
from nnparity.shared.core.data import epoch_order
from nnparity.shared.core.optimizers import (OPTIMIZERS, OptimizerState, init_state,
                                             optimizer_from_dict, state_buffers)
from nnparity.shared.core.tree import leaves
from conftest import require

TOL = POLICY["float64"]
BACKENDS = ("numpy", "torch", "jax")
BUFFER_NAMES = ("momentum_buffer", "exp_avg", "exp_avg_sq", "square_avg", "grad_avg")

# ------------------------------------------------------------------ the workload

SIZES = (3, 5, 4, 2)          # 3 inputs, two hidden layers, 2 outputs
N_TRAIN, BATCH, EPOCHS = 12, 4, 20   # 3 steps per epoch, 60 steps
N_STEPS = EPOCHS * (N_TRAIN // BATCH)


def dataset(loss: str) -> Dataset:
    """12 training rows and 3 test rows of float64 features, targets suited to ``loss``."""
    rs = np.random.RandomState(2024)
    x = rs.randn(N_TRAIN + 3, SIZES[0])
    if loss == "cross_entropy":
        y = rs.randint(0, SIZES[-1], size=N_TRAIN + 3).astype(np.int64)    # (n,) labels
    elif loss == "bce_with_logits":
        y = rs.rand(N_TRAIN + 3, SIZES[-1])                                # soft targets in [0, 1)
        y[::3] = np.round(y[::3])                                          # and some hard 0/1
    else:
        y = 1.5 * rs.randn(N_TRAIN + 3, SIZES[-1])     # residuals on both sides of huber's delta
    return Dataset(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])


class Case(NamedTuple):
    spec: NetworkSpec
    data: Dataset


def make_case(opt, loss="mse", activation="tanh", shuffle=False) -> Case:
    spec = NetworkSpec(sizes=SIZES, activation=activation, init="xavier_uniform", loss=loss,
                       optimizer=opt, batch_size=BATCH, epochs=EPOCHS, seed=5, dtype="float64",
                       shuffle=shuffle)
    return Case(spec, dataset(loss))


#: id -> optimizer. Every argument of every optimizer takes a non-default value
#: somewhere below, and every structural variant (momentum, nesterov, centered) appears.
OPTIMIZER_CASES = {
    "sgd-lr0.1": SGD(lr=0.1),
    "sgd-momentum0.9": SGD(lr=0.05, momentum=0.9),
    "sgd-momentum0.8-dampening0.3": SGD(lr=0.05, momentum=0.8, dampening=0.3),
    "sgd-momentum0.9-dampening1": SGD(lr=0.05, momentum=0.9, dampening=1.0),
    "sgd-nesterov0.9": SGD(lr=0.05, momentum=0.9, nesterov=True),
    "sgd-wd0.1": SGD(lr=0.1, weight_decay=0.1),
    "sgd-momentum0.7-dampening0.2-wd0.05": SGD(lr=0.05, momentum=0.7, dampening=0.2,
                                              weight_decay=0.05),
    "sgd-nesterov0.6-wd0.02": SGD(lr=0.05, momentum=0.6, nesterov=True, weight_decay=0.02),
    "adam-default": Adam(),
    "adam-lr0.02-betas0.8,0.99": Adam(lr=0.02, betas=(0.8, 0.99)),
    "adam-lr0.01-eps0.01": Adam(lr=0.01, eps=1e-2),
    "adam-lr0.01-wd0.1": Adam(lr=0.01, weight_decay=0.1),
    "adam-lr0.01-betas0,0.9": Adam(lr=0.01, betas=(0.0, 0.9)),
    "adamw-default-wd0.01": AdamW(),
    "adamw-lr0.01-wd0": AdamW(lr=0.01, weight_decay=0.0),
    "adamw-lr0.01-wd0.1": AdamW(lr=0.01, weight_decay=0.1),
    "adamw-lr0.02-betas0.85,0.95-eps1e-3-wd0.3": AdamW(lr=0.02, betas=(0.85, 0.95), eps=1e-3,
                                                       weight_decay=0.3),
    "rmsprop-default": RMSprop(),
    "rmsprop-lr0.003-alpha0.9-eps1e-4": RMSprop(lr=0.003, alpha=0.9, eps=1e-4),
    "rmsprop-lr0.005-wd0.1": RMSprop(lr=0.005, weight_decay=0.1),
    "rmsprop-momentum0.8": RMSprop(lr=0.002, momentum=0.8),
    "rmsprop-centered": RMSprop(lr=0.005, centered=True),
    "rmsprop-centered-momentum0.5": RMSprop(lr=0.002, momentum=0.5, centered=True),
    "rmsprop-all-args": RMSprop(lr=0.002, alpha=0.95, eps=1e-6, weight_decay=0.05, momentum=0.3,
                                centered=True),
}

#: the optimizer x loss part of the grid: one rich setting per optimizer, every
#: other loss (mse is covered by all of OPTIMIZER_CASES). JAX compiles once per
#: (loss, activation, optimizer structure), so this grid is kept to 16 cells, and
#: the default run takes its diagonal (each optimizer with one loss, each loss with
#: one optimizer); the other 12 cells are slow tests.
LOSS_GRID_OPTIMIZERS = ("sgd-nesterov0.6-wd0.02", "adam-lr0.01-wd0.1",
                        "adamw-lr0.02-betas0.85,0.95-eps1e-3-wd0.3", "rmsprop-all-args")
LOSS_GRID_LOSSES = ("cross_entropy", "mae", "huber", "bce_with_logits")

CASES: dict[str, Case] = {}
SLOW_CASES: set[str] = set()
for _i, (_name, _opt) in enumerate(OPTIMIZER_CASES.items()):
    CASES[f"{_name}-mse"] = make_case(_opt, "mse", "tanh", shuffle=bool(_i % 2))
for _i, _name in enumerate(LOSS_GRID_OPTIMIZERS):
    for _j, _loss in enumerate(LOSS_GRID_LOSSES):
        CASES[f"{_name}-{_loss}"] = make_case(OPTIMIZER_CASES[_name], _loss, "relu",
                                              shuffle=bool(_j % 2))
        if _i != _j:
            SLOW_CASES.add(f"{_name}-{_loss}")

ORACLE_PARAMS = [pytest.param(backend, case, id=f"{backend}-{case}",
                              marks=[pytest.mark.slow] if case in SLOW_CASES else [])
                 for case in CASES for backend in BACKENDS]


def batches(spec: NetworkSpec, n_rows: int) -> list[np.ndarray]:
    """Every step's row indices: consecutive slices of each epoch's order."""
    out = []
    for epoch in range(spec.epochs):
        order = epoch_order(n_rows, epoch, spec.seed, spec.shuffle)
        out.extend(order[i:i + spec.batch_size] for i in range(0, n_rows, spec.batch_size))
    return out


# ------------------------------------------------------------------ comparison


def diff(label: str, actual, expected, oracle: str) -> str | None:
    """None when ``actual`` matches ``expected`` under the float64 policy, else a message."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return f"{label}: shape {a.shape} != expected {e.shape}"
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        return f"{label}: non-finite values (ours {a.ravel()[:4]}, oracle {e.ravel()[:4]})"
    gap = np.abs(a - e)
    max_abs = float(gap.max(initial=0.0))
    nonzero = e != 0
    max_rel = float((gap[nonzero] / np.abs(e[nonzero])).max(initial=0.0))
    if np.all(gap <= TOL.atol + TOL.rtol * np.abs(e)):
        return None
    return (f"{label}: max |ours - {oracle}| = {max_abs:.3g}, max rel {max_rel:.3g} "
            f"(tolerance {TOL})")


def pairs(tree) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(weight, bias), ...] of the Dense layers of a parameter tree, or of an optimizer
    buffer shaped like one (the MLP's Activation layers hold nothing)."""
    return [(layer["weight"], layer["bias"]) for layer in tree if layer]


def flat(pairs) -> list[tuple[str, np.ndarray]]:
    """[(W0, b0), ...] -> [("W0", W0), ("b0", b0), ...]: the k-th Dense layer's pair
    is labelled Wk, bk."""
    return [(f"{name}{layer}", array) for layer, pair in enumerate(pairs)
            for name, array in zip("Wb", pair, strict=True)]


def param_mismatches(params, reference_params, oracle) -> list[str]:
    return [m for (label, a), (_, e) in zip(flat(params), flat(reference_params), strict=True)
            if (m := diff(f"param {label}", a, e, oracle))]


# ------------------------------------------------------------------ torch.optim oracle


class Reference(NamedTuple):
    params: list                   # [(W, b), ...] NumPy
    losses: np.ndarray             # (n_steps,)
    state: dict                    # buffer name -> [(W-shaped, b-shaped), ...]
    steps: int | None              # torch's state["step"] (None: SGD keeps no step)


def torch_loss(F, loss: str, p, y, loss_kwargs):
    if loss == "mse":
        return F.mse_loss(p, y, reduction="mean")
    if loss == "mae":
        return F.l1_loss(p, y, reduction="mean")
    if loss == "huber":
        return F.huber_loss(p, y, reduction="mean", delta=loss_kwargs["delta"])
    if loss == "cross_entropy":
        return F.cross_entropy(p, y, reduction="mean")
    if loss == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(p, y, reduction="mean")
    raise AssertionError(loss)


def torch_optimizer_args(opt) -> dict:
    """Our dataclass's fields, passed by name: they are torch.optim's names."""
    return {f.name: getattr(opt, f.name) for f in fields(opt)}


@functools.cache
def torch_reference(case_id: str) -> Reference:
    """The case trained with plain torch tensors and ``torch.optim``."""
    torch = require("torch")
    F = torch.nn.functional
    spec, data = CASES[case_id]
    act = {"tanh": torch.tanh, "relu": torch.relu}[spec.activation]
    leaves = [(torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True))
              for w, b in pairs(init_params(spec))]
    flat_leaves = [t for pair in leaves for t in pair]
    assert all(t.dtype == torch.float64 for t in flat_leaves)
    opt_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                 "rmsprop": torch.optim.RMSprop}[spec.optimizer.name]
    optimizer = opt_class(flat_leaves, **torch_optimizer_args(spec.optimizer))
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    losses = []
    for rows in batches(spec, N_TRAIN):
        rows = torch.from_numpy(rows)
        h = x[rows]
        for layer, (w, b) in enumerate(leaves):
            h = h @ w.T + b                                        # (batch, out)
            if layer < len(leaves) - 1:
                h = act(h)
        loss = torch_loss(F, spec.loss, h, y[rows], spec.loss_kwargs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    state = {}
    for name in BUFFER_NAMES:
        if any(name in optimizer.state[t] for t in flat_leaves):
            arrays = [optimizer.state[t][name].detach().numpy().copy() for t in flat_leaves]
            state[name] = list(zip(arrays[0::2], arrays[1::2], strict=True))
    steps = {int(optimizer.state[t]["step"]) for t in flat_leaves if "step" in optimizer.state[t]}
    assert len(steps) <= 1
    extra = {k for t in flat_leaves for k in optimizer.state[t]} - set(BUFFER_NAMES) - {"step"}
    assert not extra, f"torch.optim keeps buffers this test does not know: {extra}"
    return Reference(params=[(w.detach().numpy().copy(), b.detach().numpy().copy())
                             for w, b in leaves],
                     losses=np.array(losses), state=state, steps=steps.pop() if steps else None)


def run_backend(backend: str, case_id: str):
    if backend != "numpy":
        require(backend)
    spec, data = CASES[case_id]
    return train(spec, data, backend)


def torch_mismatches(result, reference: Reference) -> list[str]:
    """Everything in ``result`` that does not match torch.optim's run."""
    out = param_mismatches(pairs(result.params), reference.params, "torch.optim")
    if (m := diff("losses", result.losses, reference.losses, "torch.optim")):
        out.append(m)
    return out


def state_mismatches(result, reference: Reference) -> list[str]:
    spec = result.spec
    out = []
    ours = result.opt_state
    if not isinstance(ours, OptimizerState):
        return [f"opt_state {ours!r} is not an OptimizerState"]
    if set(ours.buffers) != set(state_buffers(spec.optimizer)):
        out.append(f"opt_state buffers {sorted(ours.buffers)} != "
                   f"{state_buffers(spec.optimizer)}")
    if set(reference.state) != set(state_buffers(spec.optimizer)):
        out.append(f"torch.optim buffers {sorted(reference.state)} != state_buffers "
                   f"{state_buffers(spec.optimizer)}")
    if ours.step != N_STEPS:
        out.append(f"opt_state.step = {ours.step!r}, expected {N_STEPS}")
    if reference.steps is not None and reference.steps != N_STEPS:
        out.append(f"torch.optim step {reference.steps} != {N_STEPS}")
    for name, expected in reference.state.items():
        if name not in ours.buffers:
            continue
        out += [m for (label, a), (_, e) in zip(flat(pairs(ours.buffers[name])), flat(expected),
                                                strict=True)
                if (m := diff(f"{name} {label}", a, e, "torch.optim"))]
    return out


@pytest.mark.parametrize("backend, case", ORACLE_PARAMS)
def test_matches_torch_optim(backend, case):
    """Parameters after 60 steps, every step's loss and the final optimizer state
    (buffers equal torch.optim's ``state[p]``, step = 60) equal torch.optim's."""
    reference = torch_reference(case)
    result = run_backend(backend, case)
    assert len(reference.losses) == N_STEPS
    mismatches = torch_mismatches(result, reference) + state_mismatches(result, reference)
    assert not mismatches, "\n".join(mismatches)


def test_grid_covers_every_argument():
    """Every optimizer argument takes a non-default value in the torch.optim grid."""
    for cls in OPTIMIZERS.values():
        used = [opt for opt in OPTIMIZER_CASES.values() if isinstance(opt, cls)]
        for f in fields(cls):
            values = {getattr(opt, f.name) for opt in used}
            if f.name == "betas":
                assert {b[0] for b in values} - {0.9} and {b[1] for b in values} - {0.999}
            else:
                assert values - {f.default}, f"{cls.__name__}.{f.name} only at its default"
    covered = {(s.spec.optimizer.name, s.spec.loss) for s in CASES.values()}
    for opt in OPTIMIZERS:
        for loss in ("mse",) + LOSS_GRID_LOSSES:
            assert (opt, loss) in covered
    assert any(c.spec.shuffle for c in CASES.values())
    assert any(not c.spec.shuffle for c in CASES.values())
    rms = [o for o in OPTIMIZER_CASES.values() if isinstance(o, RMSprop)]
    assert any(o.centered and o.momentum > 0 for o in rms)


# ------------------------------------------------------------------ first steps by hand

FIRST_X = np.array([[0.5, -1.2, 2.0], [1.5, 0.3, -0.7], [-0.4, 0.8, 0.9], [2.2, -0.5, 0.1]])
FIRST_Y = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.2], [2.5, -0.4]])


def first_step_run(opt, backend, epochs=1):
    """A linear layer (3 -> 2) under mse, one batch of all 4 rows per epoch."""
    if backend != "numpy":
        require(backend)
    spec = NetworkSpec(sizes=(3, 2), init="xavier_uniform", loss="mse", optimizer=opt,
                       batch_size=4, epochs=epochs, seed=3)
    data = Dataset(FIRST_X, FIRST_Y, FIRST_X[:1], FIRST_Y[:1])
    return spec, train(spec, data, backend)


#: The hand-derived first steps in every backend; in JAX each optimizer's linear model
#: compiles a program of its own, so the JAX cases are slow tests (test_matches_torch_optim
#: checks the JAX backend's every step against torch.optim in the default run).
FIRST_STEP_BACKENDS = [pytest.param("numpy", id="numpy"), pytest.param("torch", id="torch"),
                       pytest.param("jax", id="jax", marks=pytest.mark.slow)]


def linear_mse_grad(w, b):
    """dL/dW (2, 3), dL/db (2,) of mean((x W^T + b - y)^2), written out."""
    d = 2 * (FIRST_X @ w.T + b - FIRST_Y) / FIRST_Y.size          # (4, 2)
    return d.T @ FIRST_X, d.sum(axis=0)


def assert_pairs(label, actual_pairs, expected_pairs):
    mismatches = [m for (name, a), (_, e) in zip(flat(actual_pairs), flat(expected_pairs),
                                                 strict=True)
                  if (m := diff(f"{label} {name}", a, e, "hand"))]
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("backend", FIRST_STEP_BACKENDS)
def test_sgd_momentum_buffer_starts_at_first_gradient(backend):
    """Step 1: buffer = g (not (1 - dampening) g); step 2: buffer = mu g1 + (1 - d) g2."""
    lr, mu, d = 0.1, 0.9, 0.5
    opt = SGD(lr=lr, momentum=mu, dampening=d)
    spec, one = first_step_run(opt, backend)
    ((w0, b0),) = pairs(init_params(spec))
    g1 = linear_mse_grad(w0, b0)
    buffer1 = pairs(one.opt_state.buffers["momentum_buffer"])
    assert_pairs("buffer", buffer1, [g1])
    assert_pairs("params", pairs(one.params), [(w0 - lr * g1[0], b0 - lr * g1[1])])
    damped = [m for (name, a), (_, e) in zip(flat(buffer1),
                                              flat([((1 - d) * g1[0], (1 - d) * g1[1])]),
                                              strict=True)
              if (m := diff(name, a, e, "hand"))]
    assert len(damped) == 2, "the buffer must not start at (1 - dampening) g"

    _, two = first_step_run(opt, backend, epochs=2)
    w1, b1 = w0 - lr * g1[0], b0 - lr * g1[1]
    g2 = linear_mse_grad(w1, b1)
    buffer = (mu * g1[0] + (1 - d) * g2[0], mu * g1[1] + (1 - d) * g2[1])
    assert_pairs("buffer", pairs(two.opt_state.buffers["momentum_buffer"]), [buffer])
    assert_pairs("params", pairs(two.params), [(w1 - lr * buffer[0], b1 - lr * buffer[1])])
    assert two.opt_state.step == 2


def _adam_first(opt, p, g):
    b1, b2 = opt.betas
    decay = 1 - opt.lr * opt.weight_decay if isinstance(opt, AdamW) else 1.0
    if isinstance(opt, Adam):
        g = g + opt.weight_decay * p
    # m = (1 - b1) g, v = (1 - b2) g^2; bias correction gives m_hat = g, v_hat = g^2
    return (p * decay - opt.lr * g / (np.abs(g) + opt.eps),
            {"exp_avg": (1 - b1) * g, "exp_avg_sq": (1 - b2) * g * g})


def _rmsprop_first(opt, p, g):
    g = g + opt.weight_decay * p
    a = opt.alpha
    v = (1 - a) * g * g
    bufs = {"square_avg": v}
    if opt.centered:
        bufs["grad_avg"] = (1 - a) * g
        d = np.sqrt(a * (1 - a)) * np.abs(g) + opt.eps        # sqrt(v - avg^2) at step 1
    else:
        d = np.sqrt(1 - a) * np.abs(g) + opt.eps
    if opt.momentum > 0:
        bufs["momentum_buffer"] = g / d                        # starts at zero, then + g/d
    return p - opt.lr * g / d, bufs


FIRST_STEP_CASES = [
    pytest.param(Adam(lr=0.01, betas=(0.8, 0.9)), _adam_first, id="adam"),
    pytest.param(Adam(lr=0.01, weight_decay=0.5), _adam_first, id="adam-wd0.5"),
    pytest.param(AdamW(lr=0.01, weight_decay=0.5), _adam_first, id="adamw-wd0.5"),
    pytest.param(RMSprop(lr=0.01), _rmsprop_first, id="rmsprop"),
    pytest.param(RMSprop(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.7, centered=True),
                 _rmsprop_first, id="rmsprop-centered-momentum-wd"),
]


@pytest.mark.parametrize("backend", FIRST_STEP_BACKENDS)
@pytest.mark.parametrize("opt, rule", FIRST_STEP_CASES)
def test_first_step_equations(opt, rule, backend):
    """The first step and every buffer after it, from the equations applied to g by hand."""
    spec, result = first_step_run(opt, backend)
    ((w0, b0),) = pairs(init_params(spec))
    gw, gb = linear_mse_grad(w0, b0)
    (w1, bufs_w), (b1, bufs_b) = rule(opt, w0, gw), rule(opt, b0, gb)
    assert_pairs("params", pairs(result.params), [(w1, b1)])
    assert set(result.opt_state.buffers) == set(bufs_w)
    for name in bufs_w:
        assert_pairs(name, pairs(result.opt_state.buffers[name]), [(bufs_w[name], bufs_b[name])])
    assert result.opt_state.step == 1


@pytest.mark.parametrize("backend", FIRST_STEP_BACKENDS)
def test_adam_first_step_is_lr_times_sign(backend):
    """Bias correction makes Adam's first move lr * g / (|g| + eps), i.e. ~lr * sign(g)."""
    lr, eps = 0.01, 1e-8
    spec, result = first_step_run(Adam(lr=lr, eps=eps), backend)
    ((w0, b0),) = pairs(init_params(spec))
    w1, b1 = result.params[0]["weight"], result.params[0]["bias"]
    for label, p0, p1, g in (("W", w0, w1, linear_mse_grad(w0, b0)[0]),
                             ("b", b0, b1, linear_mse_grad(w0, b0)[1])):
        step = p1 - p0
        assert np.all(np.abs(g) > 1e-3), "a gradient this small would not test the sign"
        assert np.array_equal(np.sign(step), -np.sign(g)), label
        # |step| = lr |g| / (|g| + eps) lies in [lr (1 - eps/|g|), lr]
        assert np.all(np.abs(np.abs(step) - lr) <= lr * eps / np.abs(g) + TOL.atol), \
            (label, np.abs(step) - lr)


# ------------------------------------------------------------------ optax oracle


@functools.cache
def jax_loss_and_grad(activation: str, loss: str):
    """A jitted (params, x, y) -> (loss, grads), loss written in jnp."""
    jax = require("jax")
    jnp = jax.numpy
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[activation]

    def loss_fn(params, x, y):
        h = x
        for layer, (w, b) in enumerate(params):
            h = h @ w.T + b                                        # (batch, out)
            if layer < len(params) - 1:
                h = act(h)
        if loss == "mse":
            return jnp.mean((h - y) ** 2)
        if loss == "cross_entropy":
            picked = jnp.take_along_axis(h, y[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(h, axis=1) - picked)
        raise AssertionError(loss)

    return jax.jit(jax.value_and_grad(loss_fn))


def optax_run(case: Case, tx):
    """Train ``case`` with the optax transformation ``tx``, float64 throughout."""
    jax = require("jax")
    optax = require("optax")
    spec, data = case
    grad_fn = jax_loss_and_grad(spec.activation, spec.loss)

    with jax.enable_x64(True):
        params = [(jax.numpy.asarray(w), jax.numpy.asarray(b))
                  for w, b in pairs(init_params(spec))]
        assert all(a.dtype == np.float64 for pair in params for a in pair)

        @jax.jit
        def step(params, state, x, y):
            loss, grads = grad_fn(params, x, y)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        state = tx.init(params)
        losses = []
        for rows in batches(spec, N_TRAIN):
            params, state, loss = step(params, state, data.x_train[rows], data.y_train[rows])
            losses.append(loss)
        assert params[0][0].dtype == np.float64 and losses[-1].dtype == np.float64
        return (jax.tree.map(np.asarray, params), np.array(losses),
                jax.tree.map(np.asarray, state))


def optax_mismatches(case: Case, tx, buffers=()) -> list[str]:
    """Our numpy backend against optax: params, losses and the named state buffers.

    ``buffers``: (our buffer, optax state field, factor) with optax's = factor * ours.
    """
    optax = require("optax")
    params, losses, state = optax_run(case, tx)
    ours = train(case.spec, case.data, "numpy")
    out = param_mismatches(pairs(ours.params), params, "optax")
    if (m := diff("losses", ours.losses, losses, "optax")):
        out.append(m)
    for name, field, factor in buffers:
        theirs = optax.tree.get(state, field)
        expected = [(factor * w, factor * b) for w, b in pairs(ours.opt_state.buffers[name])]
        out += [m for (label, a), (_, e) in zip(flat(expected), flat(theirs), strict=True)
                if (m := diff(f"{name} ({field}) {label}", a, e, "optax"))]
    return out


def _sgd(optax, lr, momentum=None, nesterov=False, wd=0.0):
    tx = optax.sgd(lr, momentum=momentum, nesterov=nesterov)
    return optax.chain(optax.add_decayed_weights(wd), tx) if wd else tx


def _rmsprop(optax, opt, **overrides):
    """optax.rmsprop with torch's rule: decay=alpha, eps outside the sqrt."""
    kwargs = dict(decay=opt.alpha, eps=opt.eps, eps_in_sqrt=False, centered=opt.centered,
                  momentum=opt.momentum or None)
    kwargs.update(overrides)
    tx = optax.rmsprop(opt.lr, **kwargs)
    return optax.chain(optax.add_decayed_weights(opt.weight_decay), tx) \
        if opt.weight_decay else tx


MOMENTUM = [("momentum_buffer", "trace", 1.0)]
ADAM = [("exp_avg", "mu", 1.0), ("exp_avg_sq", "nu", 1.0)]

#: id -> (our optimizer, loss, optax transformation factory, buffers to compare)
OPTAX_SAME = {
    "sgd-lr0.1": (SGD(lr=0.1), "mse", lambda o: _sgd(o, 0.1), []),
    "sgd-momentum0.9": (SGD(lr=0.05, momentum=0.9), "mse",
                        lambda o: _sgd(o, 0.05, 0.9), MOMENTUM),
    "sgd-nesterov0.9": (SGD(lr=0.05, momentum=0.9, nesterov=True), "mse",
                        lambda o: _sgd(o, 0.05, 0.9, nesterov=True), MOMENTUM),
    "sgd-momentum0.7-wd0.05": (SGD(lr=0.05, momentum=0.7, weight_decay=0.05), "mse",
                               lambda o: _sgd(o, 0.05, 0.7, wd=0.05), MOMENTUM),
    "sgd-nesterov0.6-wd0.02": (SGD(lr=0.05, momentum=0.6, nesterov=True, weight_decay=0.02),
                               "cross_entropy",
                               lambda o: _sgd(o, 0.05, 0.6, nesterov=True, wd=0.02), MOMENTUM),
    "adam-default": (Adam(), "mse", lambda o: o.adam(1e-3, eps_root=0.0), ADAM),
    "adam-lr0.02-betas0.8,0.99-eps1e-3": (
        Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-3), "mse",
        lambda o: o.adam(0.02, b1=0.8, b2=0.99, eps=1e-3, eps_root=0.0), ADAM),
    "adam-lr0.01-wd0.1": (
        Adam(lr=0.01, weight_decay=0.1), "cross_entropy",
        lambda o: o.chain(o.add_decayed_weights(0.1), o.adam(0.01, eps_root=0.0)), ADAM),
    "adamw-default-wd0.01": (AdamW(), "mse", lambda o: o.adamw(1e-3, weight_decay=1e-2), ADAM),
    "adamw-lr0.02-betas0.85,0.95-eps1e-6-wd0.3": (
        AdamW(lr=0.02, betas=(0.85, 0.95), eps=1e-6, weight_decay=0.3), "cross_entropy",
        lambda o: o.adamw(0.02, b1=0.85, b2=0.95, eps=1e-6, eps_root=0.0, weight_decay=0.3),
        ADAM),
    "rmsprop-torch-defaults": (RMSprop(), "mse", lambda o: _rmsprop(o, RMSprop()),
                               [("square_avg", "nu", 1.0)]),
    "rmsprop-lr0.003-alpha0.9-eps1e-4": (
        RMSprop(lr=0.003, alpha=0.9, eps=1e-4), "mse",
        lambda o: _rmsprop(o, RMSprop(lr=0.003, alpha=0.9, eps=1e-4)),
        [("square_avg", "nu", 1.0)]),
    "rmsprop-wd0.05-momentum0.8": (
        RMSprop(lr=0.002, weight_decay=0.05, momentum=0.8), "mse",
        lambda o: _rmsprop(o, RMSprop(lr=0.002, weight_decay=0.05, momentum=0.8)),
        [("square_avg", "nu", 1.0), ("momentum_buffer", "trace", -0.002)]),
    "rmsprop-centered-momentum0.5": (
        RMSprop(lr=0.002, alpha=0.95, eps=1e-6, momentum=0.5, centered=True), "cross_entropy",
        lambda o: _rmsprop(o, RMSprop(lr=0.002, alpha=0.95, eps=1e-6, momentum=0.5,
                                      centered=True)),
        [("square_avg", "nu", 1.0), ("grad_avg", "mu", 1.0),
         ("momentum_buffer", "trace", -0.002)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(OPTAX_SAME))
def test_matches_optax(case_id):
    """Where optax has torch's rule, our numpy backend matches it (params, losses, buffers)."""
    optax = require("optax")
    opt, loss, factory, buffers = OPTAX_SAME[case_id]
    case = make_case(opt, loss, "tanh", shuffle=True)
    mismatches = optax_mismatches(case, factory(optax), buffers)
    assert not mismatches, "\n".join(mismatches)


#: id -> (our optimizer, an optax transformation that looks like it but is not)
OPTAX_DIFFERENT = {
    # optax.rmsprop with its own defaults against torch's defaults: everything differs
    "rmsprop-optax-defaults": (RMSprop(lr=0.01), lambda o: o.rmsprop(0.01)),
    # one difference at a time, the rest set to torch's rule
    "rmsprop-eps_in_sqrt": (RMSprop(lr=0.01),
                            lambda o: _rmsprop(o, RMSprop(lr=0.01), eps_in_sqrt=True)),
    "rmsprop-decay-default-0.9": (RMSprop(lr=0.01),
                                  lambda o: _rmsprop(o, RMSprop(lr=0.01), decay=0.9)),
    "rmsprop-initial_scale-1": (RMSprop(lr=0.01),
                                lambda o: _rmsprop(o, RMSprop(lr=0.01), initial_scale=1.0)),
    "rmsprop-bias_correction": (RMSprop(lr=0.01),
                                lambda o: _rmsprop(o, RMSprop(lr=0.01), bias_correction=True)),
    "sgd-dampening0.3-not-in-optax": (SGD(lr=0.05, momentum=0.8, dampening=0.3),
                                      lambda o: _sgd(o, 0.05, 0.8)),
    "adam-eps_root": (Adam(lr=0.01), lambda o: o.adam(0.01, eps_root=1e-8)),
    "adamw-optax-default-wd1e-4": (AdamW(), lambda o: o.adamw(1e-3)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(OPTAX_DIFFERENT))
def test_optax_rule_differs(case_id):
    """Documented differences are real: the runs differ far beyond the float64 policy."""
    optax = require("optax")
    opt, factory = OPTAX_DIFFERENT[case_id]
    case = make_case(opt, "mse", "tanh", shuffle=True)
    params, _, _ = optax_run(case, factory(optax))
    ours = train(case.spec, case.data, "numpy")
    rel = max(np.max(np.abs(a - e)) / np.max(np.abs(e))
              for (_, a), (_, e) in zip(flat(pairs(ours.params)), flat(params), strict=True))
    assert param_mismatches(pairs(ours.params), params, "optax (different rule)")
    assert rel > 1e3 * TOL.rtol, rel


def test_optax_defaults_where_they_agree():
    """optax.adam's b1, b2, eps defaults are torch's; adamw's weight_decay default is not."""
    optax = require("optax")
    adam = inspect.signature(optax.adam).parameters
    assert (adam["b1"].default, adam["b2"].default) == Adam().betas
    assert adam["eps"].default == Adam().eps and adam["eps_root"].default == 0.0
    adamw = inspect.signature(optax.adamw).parameters
    assert adamw["weight_decay"].default == 1e-4 != AdamW().weight_decay
    rms = inspect.signature(optax.rmsprop).parameters
    assert rms["decay"].default == 0.9 != RMSprop().alpha
    assert rms["eps_in_sqrt"].default is True
    assert rms["initial_scale"].default == 0.0


# ------------------------------------------------------------------ negative controls


def _adam_eps_inside_sqrt(opt, params, grads, state, decoupled=False):
    t = state.step + 1
    beta1, beta2 = opt.betas
    for p, g, m, v in zip(leaves(params), leaves(grads), leaves(state.buffers["exp_avg"]),
                          leaves(state.buffers["exp_avg_sq"]), strict=True):
        if decoupled:
            p *= 1 - opt.lr * opt.weight_decay
        elif opt.weight_decay != 0:
            g = g + opt.weight_decay * p
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        p -= opt.lr * (m / (1 - beta1 ** t)) / np.sqrt(v / (1 - beta2 ** t) + opt.eps)  # wrong


def _adamw_coupled(opt, params, grads, state):
    numpy_optimizers.adam(opt, params, grads, state, decoupled=False)     # L2, not decoupled


def _sgd_damped_first_buffer(opt, params, grads, state):
    t = state.step
    buffers = leaves(state.buffers["momentum_buffer"])
    for i, (p, g) in enumerate(zip(leaves(params), leaves(grads), strict=True)):
        if opt.weight_decay != 0:
            g = g + opt.weight_decay * p
        b = buffers[i]
        if t == 0:
            b[...] = (1 - opt.dampening) * g                 # wrong: torch starts at g
        else:
            b *= opt.momentum
            b += (1 - opt.dampening) * g
        g = g + opt.momentum * b if opt.nesterov else b
        p -= opt.lr * g


def _rmsprop_eps_inside_sqrt(opt, params, grads, state):
    for p, g, v in zip(leaves(params), leaves(grads), leaves(state.buffers["square_avg"]),
                       strict=True):
        g = g + opt.weight_decay * p
        v *= opt.alpha
        v += (1 - opt.alpha) * g * g
        p -= opt.lr * g / np.sqrt(v + opt.eps)                # wrong: eps inside the sqrt


def _rmsprop_optax_style_trace(opt, params, grads, state):
    """Right parameters, wrong state: the buffer holds lr * b (optax's trace convention)."""
    for p, g, v, b in zip(leaves(params), leaves(grads), leaves(state.buffers["square_avg"]),
                          leaves(state.buffers["momentum_buffer"]), strict=True):
        g = g + opt.weight_decay * p
        v *= opt.alpha
        v += (1 - opt.alpha) * g * g
        b *= opt.momentum
        b += opt.lr * g / (np.sqrt(v) + opt.eps)
        p -= b


NEGATIVE_CONTROLS = [
    pytest.param("adam", _adam_eps_inside_sqrt, "adam-default-mse", id="adam-eps-inside-sqrt"),
    pytest.param("adam", _adam_eps_inside_sqrt, "adam-lr0.01-eps0.01-mse",
                 id="adam-eps0.01-inside-sqrt"),
    pytest.param("adamw", _adamw_coupled, "adamw-lr0.01-wd0.1-mse", id="adamw-as-l2"),
    pytest.param("sgd", _sgd_damped_first_buffer, "sgd-momentum0.8-dampening0.3-mse",
                 id="sgd-buffer-starts-damped"),
    pytest.param("rmsprop", _rmsprop_eps_inside_sqrt, "rmsprop-default-mse",
                 id="rmsprop-eps-inside-sqrt"),
]


@pytest.mark.parametrize("name, wrong, case", NEGATIVE_CONTROLS)
def test_wrong_update_fails_torch_optim(monkeypatch, name, wrong, case):
    """A deliberately wrong numpy rule fails the very comparison the oracle tests make."""
    reference = torch_reference(case)
    monkeypatch.setitem(numpy_optimizers.UPDATES, name, wrong)
    result = run_backend("numpy", case)
    mismatches = torch_mismatches(result, reference)
    assert any(m.startswith("param") for m in mismatches), mismatches


def test_wrong_state_fails_state_comparison(monkeypatch):
    """Parameters right, buffer stored as lr * b: only the state comparison catches it."""
    case = "rmsprop-momentum0.8-mse"
    reference = torch_reference(case)
    monkeypatch.setitem(numpy_optimizers.UPDATES, "rmsprop", _rmsprop_optax_style_trace)
    result = run_backend("numpy", case)
    assert not torch_mismatches(result, reference)
    mismatches = state_mismatches(result, reference)
    assert mismatches and all(m.startswith("momentum_buffer") for m in mismatches), mismatches


def test_wrong_torch_backend_update_fails(monkeypatch):
    """The torch backend's comparison can fail too: its SGD buffer starting at (1 - d) g."""
    require("torch")
    from nnparity.backends.torch import optimizers as torch_optimizers

    def damped(opt, params, grads, state):
        for i, (p, g) in enumerate(zip(leaves(params), leaves(grads), strict=True)):
            b = leaves(state.buffers["momentum_buffer"])[i]
            if state.step == 0:
                b.copy_((1 - opt.dampening) * g)
            else:
                b.mul_(opt.momentum).add_(g, alpha=1 - opt.dampening)
            p.sub_(opt.lr * b)

    case = "sgd-momentum0.8-dampening0.3-mse"
    reference = torch_reference(case)
    monkeypatch.setitem(torch_optimizers.UPDATES, "sgd", damped)
    mismatches = torch_mismatches(run_backend("torch", case), reference)
    assert any(m.startswith("param") for m in mismatches), mismatches


# ------------------------------------------------------------------ validation

NAN, INF = float("nan"), float("inf")


def bad(cls, kwargs, error, name, value, id):
    return pytest.param(cls, kwargs, error, name, value, id=id)


#: values of the wrong kind: each optimizer's lr is tried with all of them; the other
#: arguments with a bool and a string (what a hand-written check such as float(value)
#: would take), since the rest reach the same kind check as lr's
WRONG_KINDS = [True, False, "0.1", None, np.bool_(True), [0.1]]


def _number_cases(cls, arg, base, bad_values):
    """Invalid values of a numeric argument: ValueError for out of range or non-finite,
    TypeError for bools, strings, None and numpy bools."""
    out = [bad(cls, {**base, arg: v}, ValueError, f"{cls.__name__}.{arg}", v,
               f"{cls.__name__}-{arg}={v!r}") for v in bad_values + [NAN, INF, -INF]]
    out += [bad(cls, {**base, arg: v}, TypeError, f"{cls.__name__}.{arg}", v,
                f"{cls.__name__}-{arg}={v!r}")
            for v in (WRONG_KINDS if arg == "lr" else [True, "0.1"])]
    return out


VALIDATION = (
    _number_cases(SGD, "lr", {}, [-0.1, 0, 0.0])
    + _number_cases(SGD, "momentum", {"lr": 0.1}, [-0.5])
    + _number_cases(SGD, "dampening", {"lr": 0.1, "momentum": 0.5}, [-0.1, 1.5])
    + _number_cases(SGD, "weight_decay", {"lr": 0.1}, [-1e-3])
    + [bad(SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": v}, TypeError, "SGD.nesterov", v,
           f"SGD-nesterov={v!r}") for v in ["yes", 1, 0, None]]
    + [bad(SGD, {"lr": 0.1, "nesterov": True}, ValueError, "SGD.nesterov", True,
           "SGD-nesterov-momentum0"),
       bad(SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}, ValueError,
           "SGD.nesterov", True, "SGD-nesterov-dampening0.1")]
    + [case for cls in (Adam, AdamW) for case in (
        _number_cases(cls, "lr", {}, [-1e-3, 0])
        + _number_cases(cls, "eps", {}, [-1e-8])
        + _number_cases(cls, "weight_decay", {}, [-0.01])
        + [bad(cls, {"betas": v}, TypeError, f"{cls.__name__}.betas", v,
               f"{cls.__name__}-betas={v!r}")
           for v in [(0.9,), (0.9, 0.99, 0.999), 0.9, "ab", None]]
        + [bad(cls, {"betas": v}, ValueError, f"{cls.__name__}.betas[{i}]", v[i],
               f"{cls.__name__}-betas={v!r}")
           for v, i in [((1.0, 0.999), 0), ((0.9, 1.0), 1), ((-0.1, 0.999), 0),
                        ((0.9, 1.5), 1), ((NAN, 0.999), 0), ((0.9, INF), 1)]]
        + [bad(cls, {"betas": v}, TypeError, f"{cls.__name__}.betas[{i}]", v[i],
               f"{cls.__name__}-betas={v!r}")
           for v, i in [((True, 0.999), 0), ((0.9, "0.999"), 1), ((0.9, None), 1)]])]
    + _number_cases(RMSprop, "lr", {}, [-0.01, 0])
    + _number_cases(RMSprop, "alpha", {}, [-0.1, 1.01])
    + _number_cases(RMSprop, "eps", {}, [-1e-8])
    + _number_cases(RMSprop, "weight_decay", {}, [-0.1])
    + _number_cases(RMSprop, "momentum", {}, [-0.9])
    + [bad(RMSprop, {"centered": v}, TypeError, "RMSprop.centered", v, f"RMSprop-centered={v!r}")
       for v in ["no", 1, None]]
)


@pytest.mark.parametrize("cls, kwargs, error, name, value", VALIDATION)
def test_invalid_argument_rejected(cls, kwargs, error, name, value):
    """ValueError (range, non-finite, rule) or TypeError (kind); the message names both."""
    with pytest.raises(error) as info:
        cls(**kwargs)
    message = str(info.value)
    assert re.search(rf"{re.escape(name)}\W{{1,3}}{re.escape(repr(value))}", message), message


def test_nesterov_message_gives_the_reason():
    with pytest.raises(ValueError, match=r"momentum=0\.0, dampening=0\.0"):
        SGD(lr=0.1, nesterov=True)


VALID = [
    pytest.param(SGD(lr=1), id="sgd-int-lr"),
    pytest.param(SGD(lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-4),
                 id="sgd-all"),
    pytest.param(SGD(lr=0.1, momentum=0.9, dampening=1.0), id="sgd-dampening1"),
    pytest.param(SGD(lr=np.float64(0.1), momentum=np.float32(0.5), nesterov=np.bool_(False)),
                 id="sgd-numpy-scalars"),
    pytest.param(Adam(), id="adam-default"),
    pytest.param(Adam(lr=0.5, betas=[0.0, 0.5], eps=0, weight_decay=2), id="adam-edges"),
    pytest.param(AdamW(), id="adamw-default"),
    pytest.param(AdamW(lr=2e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0), id="adamw-all"),
    pytest.param(RMSprop(), id="rmsprop-default"),
    pytest.param(RMSprop(lr=0.1, alpha=0.0, eps=0.0, weight_decay=1, momentum=0.5,
                         centered=True), id="rmsprop-alpha0"),
    pytest.param(RMSprop(alpha=1.0), id="rmsprop-alpha1"),
]


@pytest.mark.parametrize("opt", VALID)
def test_json_round_trip(opt):
    """to_dict -> JSON -> optimizer_from_dict gives an equal optimizer with plain types."""
    d = opt.to_dict()
    assert d["name"] == opt.name
    text = json.dumps(d)
    back = optimizer_from_dict(json.loads(text))
    assert back == opt and type(back) is type(opt)
    for f in fields(opt):
        value = getattr(opt, f.name)
        if f.name == "betas":
            assert type(value) is tuple and all(type(b) is float for b in value)
        elif f.name in ("nesterov", "centered"):
            assert type(value) is bool
        else:
            assert type(value) is float, (f.name, type(value))
    assert json.dumps(back.to_dict()) == text


@pytest.mark.parametrize("d, error, name", [
    pytest.param({"name": "adagrad", "lr": 0.1}, ValueError, "optimizer.name", id="unknown-name"),
    pytest.param({"name": "adam", "momentum": 0.9}, ValueError, "optimizer['momentum']",
                 id="unknown-argument"),
    pytest.param({"lr": 0.1}, TypeError, "optimizer", id="no-name"),
    pytest.param({"name": "sgd"}, ValueError, "optimizer", id="sgd-without-lr"),
    pytest.param({"name": "adam", "betas": [0.9, 1.0]}, ValueError, "Adam.betas[1]",
                 id="bad-value-from-json"),
])
def test_from_dict_rejects(d, error, name):
    with pytest.raises(error, match=re.escape(name)):
        optimizer_from_dict(d)


TORCH_DEFAULT_ARGS = ("lr", "betas", "eps", "weight_decay", "momentum", "alpha", "dampening",
                      "nesterov", "centered")


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSprop], ids=lambda c: c.__name__)
def test_defaults_equal_torch_optim(cls):
    """Our defaults are torch.optim's (``optimizer.defaults`` of a default construction)
    and our argument names are its names. SGD's lr has no default here (torch >= 2.2
    defaults it to 1e-3; older torch required it, as the issue does)."""
    torch = require("torch")
    theirs = getattr(torch.optim, cls.__name__)([torch.zeros(1, requires_grad=True)]).defaults
    ours = {f.name: f.default for f in fields(cls)}
    assert set(ours) <= set(theirs), set(ours) - set(theirs)
    assert set(ours) <= set(TORCH_DEFAULT_ARGS)            # every argument is compared
    for key, value in ours.items():
        if cls is SGD and key == "lr":
            assert value is MISSING
            continue
        assert value == theirs[key], (key, value, theirs[key])
        assert isinstance(value, bool) == isinstance(theirs[key], bool), key
    if cls is SGD:
        with pytest.raises(TypeError):
            SGD()
    else:
        assert cls() == cls(**{k: theirs[k] for k in ours})


def test_state_buffers_and_init_state():
    """Buffer names are torch.optim's; the initial state is zeros shaped like the params."""
    params = [{"weight": np.ones((4, 3)), "bias": np.ones(4)}, {},
              {"weight": np.ones((2, 4)), "bias": np.ones(2)}]
    assert state_buffers(SGD(lr=0.1)) == ()
    assert state_buffers(SGD(lr=0.1, momentum=0.5)) == ("momentum_buffer",)
    assert state_buffers(Adam()) == state_buffers(AdamW()) == ("exp_avg", "exp_avg_sq")
    assert state_buffers(RMSprop()) == ("square_avg",)
    assert set(state_buffers(RMSprop(momentum=0.1, centered=True))) == {
        "square_avg", "momentum_buffer", "grad_avg"}
    state = init_state(RMSprop(momentum=0.1, centered=True), params)
    assert isinstance(state, OptimizerState) and state.step == 0
    assert set(state.buffers) == {"square_avg", "momentum_buffer", "grad_avg"}
    for name in ("square_avg", "momentum_buffer", "grad_avg"):
        tree = state.buffers[name]
        assert [set(layer) for layer in tree] == [set(layer) for layer in params]
        for buffer, p in zip(leaves(tree), leaves(params), strict=True):
            assert buffer.shape == p.shape and buffer.dtype == p.dtype
            assert not buffer.any()
            assert buffer is not p
    assert init_state(SGD(lr=0.1), params) == OptimizerState(0, {})
