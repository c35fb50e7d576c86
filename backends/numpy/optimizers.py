"""Optimizers in NumPy: the update rules of ``nnparity.shared.core.optimizers``,
applied to the parameters and the state's buffers in place.

params, grads and every buffer are trees (one dict of arrays per layer); each
rule walks their tensors one by one (``leaves``). The rules are elementwise, so
they apply unchanged to [{"flat": vector}]: all parameters as one vector (the
training loop does that).
"""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.tree import leaves


def sgd(opt, params, grads, state):
    t = state.step
    buffers = leaves(state.buffers["momentum_buffer"]) if opt.momentum != 0 else []
    for i, (p, g) in enumerate(zip(leaves(params), leaves(grads), strict=True)):
        if opt.weight_decay != 0:
            g = g + opt.weight_decay * p
        if opt.momentum != 0:
            b = buffers[i]
            if t == 0:
                b[...] = g                                   # the buffer starts at g
            else:
                b *= opt.momentum
                b += (1 - opt.dampening) * g
            g = g + opt.momentum * b if opt.nesterov else b
        p -= opt.lr * g


def adam(opt, params, grads, state, decoupled=False):
    t = state.step + 1
    beta1, beta2 = opt.betas
    ms, vs = leaves(state.buffers["exp_avg"]), leaves(state.buffers["exp_avg_sq"])
    for p, g, m, v in zip(leaves(params), leaves(grads), ms, vs, strict=True):
        if decoupled:
            p *= 1 - opt.lr * opt.weight_decay               # AdamW: decay the weights
        elif opt.weight_decay != 0:
            g = g + opt.weight_decay * p                     # Adam: L2 in the gradient
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p -= opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)   # eps outside the square root


def adamw(opt, params, grads, state):
    adam(opt, params, grads, state, decoupled=True)


def rmsprop(opt, params, grads, state):
    vs = leaves(state.buffers["square_avg"])
    bs = leaves(state.buffers["momentum_buffer"]) if opt.momentum > 0 else []
    avgs = leaves(state.buffers["grad_avg"]) if opt.centered else []
    for i, (p, g) in enumerate(zip(leaves(params), leaves(grads), strict=True)):
        if opt.weight_decay != 0:
            g = g + opt.weight_decay * p
        v = vs[i]
        v *= opt.alpha
        v += (1 - opt.alpha) * g * g
        if opt.centered:
            a = avgs[i]
            a *= opt.alpha
            a += (1 - opt.alpha) * g
            d = np.sqrt(v - a * a) + opt.eps
        else:
            d = np.sqrt(v) + opt.eps
        if opt.momentum > 0:
            b = bs[i]
            b *= opt.momentum
            b += g / d
            p -= opt.lr * b
        else:
            p -= opt.lr * g / d


#: optimizer name -> update(opt, params, grads, state), in place
UPDATES = {"sgd": sgd, "adam": adam, "adamw": adamw, "rmsprop": rmsprop}


def update(opt, params, grads, state: OptimizerState) -> OptimizerState:
    """Apply one step of ``opt`` to ``params`` and the buffers in place; the state
    with the step counted."""
    UPDATES[opt.name](opt, params, grads, state)
    return OptimizerState(state.step + 1, state.buffers)
