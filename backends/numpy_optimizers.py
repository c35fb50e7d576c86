"""Optimizers in NumPy: the update rules of ``nnparity.shared.core.optimizers``,
applied to the parameters and the state's buffers in place.

params, grads and every buffer are lists of (W, b) pairs; each rule walks the
tensors one by one. The rules are elementwise, so they apply unchanged to
[(flat,)]: all parameters as one vector (the training loop does that).
"""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.init import tensors


def sgd(opt, params, grads, state):
    t = state["step"]
    buffers = tensors(state["momentum_buffer"]) if opt.momentum != 0 else None
    for i, (p, g) in enumerate(zip(tensors(params), tensors(grads), strict=True)):
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
    t = state["step"] + 1
    beta1, beta2 = opt.betas
    ms, vs = tensors(state["exp_avg"]), tensors(state["exp_avg_sq"])
    for p, g, m, v in zip(tensors(params), tensors(grads), ms, vs, strict=True):
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
    vs = tensors(state["square_avg"])
    bs = tensors(state["momentum_buffer"]) if opt.momentum > 0 else None
    avgs = tensors(state["grad_avg"]) if opt.centered else None
    for i, (p, g) in enumerate(zip(tensors(params), tensors(grads), strict=True)):
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


def update(opt, params, grads, state):
    """Apply one step of ``opt`` in place and count it in ``state["step"]``."""
    UPDATES[opt.name](opt, params, grads, state)
    state["step"] += 1
