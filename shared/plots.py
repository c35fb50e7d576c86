"""Figures. matplotlib is the optional extra ``plot``, imported only here."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .activations import ACTIVATIONS, breakpoints
from .validation import MissingFrameworkError


def import_pyplot():
    """matplotlib.pyplot with the file-only Agg backend, or an ImportError naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise MissingFrameworkError("plotting needs matplotlib, which is not installed: "
                          "pip install 'nnparity[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_activations(path: str, backends: Sequence[str]) -> None:
    """One panel per activation: f and f' from every backend overlaid, breakpoints marked.

    The backends' curves must coincide; a visible second curve is a disagreement.
    """
    from nnparity.backends import activation_with_grad

    plt = import_pyplot()
    x = np.linspace(-5.0, 7.0, 1201)                           # includes -3, -1, 0, 1, 3, 6 exactly
    styles = {"numpy": ("-", 3.0), "torch": ("--", 1.8), "jax": (":", 1.8)}
    fig, axes = plt.subplots(6, 3, figsize=(12, 18), sharex=True)
    for ax, name in zip(axes.flat, ACTIVATIONS):
        for backend in backends:
            y, dy = activation_with_grad(name, x, backend=backend)
            style, width = styles[backend]
            ax.plot(x, y, style, lw=width, color="tab:blue", label=f"f ({backend})")
            ax.plot(x, dy, style, lw=width, color="tab:orange", label=f"f' ({backend})")
        for x0, d0 in breakpoints(name).items():
            ax.axvline(x0, color="0.7", lw=0.8, zorder=0)
            ax.plot([x0], [d0], "o", color="tab:red", ms=4, zorder=5)
        ax.set_title(name)
        ax.set_ylim(-2.0, 3.0)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("f (blue) and f' (orange) per backend; red dots: f' at breakpoints", y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
