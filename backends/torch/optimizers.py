"""Optimizers in PyTorch: the update rules of ``nnparity.shared.core.optimizers``
written by hand on tensors inside ``torch.no_grad()``; no ``torch.optim``.

params, grads and every state buffer are trees of tensors (one dict per layer).
The rules are elementwise, so they apply unchanged to [{"flat": vector}]: all
parameters as one vector (the training loop does that).
"""
from __future__ import annotations

import torch

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
                b.copy_(g)                                   # the buffer starts at g
            else:
                b.mul_(opt.momentum).add_(g, alpha=1 - opt.dampening)
            g = g + opt.momentum * b if opt.nesterov else b
        p.add_(g, alpha=-opt.lr)


def adam(opt, params, grads, state, decoupled=False):
    t = state.step + 1
    beta1, beta2 = opt.betas
    ms, vs = leaves(state.buffers["exp_avg"]), leaves(state.buffers["exp_avg_sq"])
    for p, g, m, v in zip(leaves(params), leaves(grads), ms, vs, strict=True):
        if decoupled:
            p.mul_(1 - opt.lr * opt.weight_decay)            # AdamW: decay the weights
        elif opt.weight_decay != 0:
            g = g + opt.weight_decay * p                     # Adam: L2 in the gradient
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p.sub_(opt.lr * m_hat / (v_hat.sqrt() + opt.eps))   # eps outside the square root


def adamw(opt, params, grads, state):
    adam(opt, params, grads, state, decoupled=True)


def rmsprop(opt, params, grads, state):
    vs = leaves(state.buffers["square_avg"])
    bs = leaves(state.buffers["momentum_buffer"]) if opt.momentum > 0 else []
    avgs = leaves(state.buffers["grad_avg"]) if opt.centered else []
    for i, (p, g) in enumerate(zip(leaves(params), leaves(grads), strict=True)):
        if opt.weight_decay != 0:
            g = g + opt.weight_decay * p
        v = vs[i].mul_(opt.alpha).addcmul_(g, g, value=1 - opt.alpha)
        if opt.centered:
            a = avgs[i].mul_(opt.alpha).add_(g, alpha=1 - opt.alpha)
            d = (v - a * a).sqrt() + opt.eps
        else:
            d = v.sqrt() + opt.eps
        if opt.momentum > 0:
            b = bs[i].mul_(opt.momentum).add_(g / d)
            p.sub_(opt.lr * b)
        else:
            p.sub_(opt.lr * g / d)


UPDATES = {"sgd": sgd, "adam": adam, "adamw": adamw, "rmsprop": rmsprop}


def update(opt, params, grads, state: OptimizerState) -> OptimizerState:
    """One step of ``opt`` on ``params`` and the buffers in place, under
    ``torch.no_grad()``; the state with the step counted."""
    with torch.no_grad():
        UPDATES[opt.name](opt, params, grads, state)
    return OptimizerState(state.step + 1, state.buffers)
