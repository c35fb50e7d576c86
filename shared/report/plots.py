"""Figures. matplotlib is the optional extra ``plot``, imported only here."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from nnparity.shared.core.activations import ACTIVATIONS, breakpoints
from nnparity.shared.io.files import check_output_path, write_atomic
from nnparity.shared.core.validation import MissingFrameworkError

#: backend -> (line style, width): overlaid curves stay distinguishable where they coincide
LINE_STYLES = {"numpy": ("-", 3.0), "torch": ("--", 1.8), "jax": (":", 1.8)}
#: backend -> colour in the report's plot
COLORS = {"numpy": "tab:blue", "torch": "tab:orange", "jax": "tab:green"}
#: a log axis has no 0: exact zeros are drawn on a floor line this factor below the
#: smallest positive value in the panel (at DEFAULT_FLOOR when nothing is positive)
FLOOR_FACTOR = 0.1
DEFAULT_FLOOR = 1e-20
#: opacity of the per-step minibatch losses behind panel (a)'s per-epoch means
STEP_ALPHA = 0.12


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


def to_png(plt, fig, dpi: int) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def plot_activations(path: str, backends: Sequence[str]) -> None:
    """One panel per activation: f and f' from every backend overlaid, breakpoints
    marked, written to the PNG file ``path`` atomically (``files.write_atomic``).

    The backends' curves must coincide; a visible second curve is a disagreement.
    """
    from nnparity.backends import activation_with_grad

    path = check_output_path("path", path, suffix=".png")
    plt = import_pyplot()
    x = np.linspace(-5.0, 7.0, 1201)                           # includes -3, -1, 0, 1, 3, 6 exactly
    fig, axes = plt.subplots(6, 3, figsize=(12, 18), sharex=True)
    for ax, name in zip(axes.flat, ACTIVATIONS, strict=True):
        for backend in backends:
            y, dy = activation_with_grad(name, x, backend=backend)
            style, width = LINE_STYLES[backend]
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
    png = to_png(plt, fig, dpi=80)
    write_atomic(path, lambda f: f.write(png))


def plot_report(report) -> bytes:
    """The figure of a ``ParityReport`` as PNG bytes (matplotlib: the ``plot`` extra).

    (a) every backend's mean loss per epoch as a line, overlaid, with its
    per-step minibatch losses faint behind (log axis when every loss is
    positive); with one step per epoch, the per-step losses are the lines. A
    backend that diverged is a vertical line at its step.
    (b) against the reference, on a log axis: |loss - loss_ref| per step, the
    free-running max rel difference of parameters and state per snapshot, the
    teacher-forced steps' max rel, the allowed loss difference (atol + rtol *
    |loss_ref|) and rtol. Exact zeros are drawn on a labelled floor line
    (``FLOOR_FACTOR`` times the smallest positive value); non-finite values on a
    labelled ceiling line. Nothing is dropped or replaced silently.
    """
    from nnparity.shared.report.as_json import backend_names, check_report, verdict_text

    check_report(report)
    plt = import_pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8), sharex=True)
    _plot_losses(top, report, backend_names(report))
    _plot_differences(bottom, report)
    bottom.set_xlabel("step")
    fig.suptitle(f"nnparity compare: {verdict_text(report)} "
                 f"({report.spec.dtype}, reference {report.reference})")
    fig.tight_layout()
    return to_png(plt, fig, dpi=100)


def epoch_means(losses: np.ndarray, epochs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, means): each epoch's mean minibatch loss, placed at the middle step of
    that epoch; None when ``losses`` do not split into ``epochs`` equal epochs or an
    epoch has a single step (then the per-step curve is already the epoch's)."""
    if epochs <= 0 or losses.size == 0 or losses.size % epochs:
        return None
    per_epoch = losses.size // epochs
    if per_epoch == 1:
        return None
    means = losses.reshape(epochs, per_epoch).mean(axis=1)              # (epochs,)
    return np.arange(epochs) * per_epoch + (per_epoch - 1) / 2, means


def _plot_losses(ax, report, names) -> None:
    """Panel (a): each backend's per-epoch mean loss as its line, and its per-step
    minibatch losses faint behind it (they oscillate with the batch)."""
    diverged = {report.reference: report.reference_diverged_at}
    diverged.update({p.run or p.backend: p.diverged_at for p in report.parity})
    drawn = []
    averaged = False
    for name in names:
        style, width = LINE_STYLES.get(name, ("-", 1.5))
        color = COLORS.get(name)
        result = report.results.get(name)
        if result is None:
            ax.axvline(diverged[name], ls=style, color=color,
                       label=f"{name}: diverged at step {diverged[name]}")
            continue
        losses = np.asarray(result.losses, dtype=np.float64)
        means = epoch_means(losses, report.spec.epochs)
        if means is None:
            ax.plot(np.arange(losses.size), losses, style, lw=width, color=color, label=name)
        else:
            ax.plot(np.arange(losses.size), losses, "-", lw=0.4, alpha=STEP_ALPHA, color=color,
                    zorder=1)
            ax.plot(*means, style, lw=width, color=color, zorder=3,
                    label=f"{name}: mean per epoch")
            averaged = True
        drawn.append(losses)
    if averaged:
        ax.plot([], [], "-", lw=4, alpha=STEP_ALPHA, color="0.3",
                label="faint: every step's minibatch loss")
    if not drawn:
        ax.text(0.5, 0.5, "no loss curves: a run that diverges returns no losses",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(-0.5, max(s for s in diverged.values() if s is not None) + 0.5)
    values = np.concatenate(drawn) if drawn else np.empty(0)
    log = values.size > 0 and bool(np.all(values > 0))
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("training loss" + (" (log axis)" if log else ""))
    ax.set_title("(a) training loss, every backend: mean per epoch (lines), each step's "
                 "minibatch loss (faint)" if averaged else
                 "(a) loss per step, every backend (computed before the step's update)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _plot_differences(ax, report) -> None:
    """Panel (b): see ``plot_report``."""
    ref = report.results.get(report.reference)
    series = []             # (values, steps, plot kwargs) for each curve
    for p in report.parity:
        if p.against and p.against != report.reference:
            continue                       # a data-parallel run against its own backend
        color = COLORS.get(p.backend)
        result = report.results.get(p.run or p.backend)
        if ref is not None and result is not None:
            gap = np.abs(np.asarray(result.losses, np.float64)
                         - np.asarray(ref.losses, np.float64))
            series.append((gap, np.arange(gap.size),
                           {"ls": "-", "lw": 1.0, "marker": ".", "ms": 2, "color": color,
                            "label": f"{p.backend}: |loss - loss_{report.reference}| per step"}))
        for points, marker, what in ((p.trajectory, "o", "params+state max rel per snapshot"),
                                     (p.teacher, "x", "teacher-forced step max rel")):
            if points:
                series.append((np.array([d.max_rel for d in points], np.float64),
                               np.array([d.step for d in points]),
                               {"ls": "none", "marker": marker, "ms": 4, "color": color,
                                "label": f"{p.backend}: {what}"}))
    series = [s for s in series if s[0].size]                  # epochs=0: no steps
    if not series:
        ax.text(0.5, 0.5, _no_comparison(report), ha="center", va="center",
                transform=ax.transAxes, wrap=True)
        ax.set_title(f"(b) difference to {report.reference} per step")
        ax.set_yticks([])
        return
    if ref is not None:
        ref_losses = np.abs(np.asarray(ref.losses, np.float64))
        series.append((report.tolerance.atol + report.tolerance.rtol * ref_losses,
                       np.arange(ref_losses.size),
                       {"ls": "--", "lw": 1.0, "color": "0.5",
                        "label": "allowed |loss difference| = atol + rtol*|loss_ref|"}))
    everything = np.concatenate([values for values, _, _ in series])
    finite = everything[np.isfinite(everything)]
    positive = finite[finite > 0]
    floor = FLOOR_FACTOR * positive.min() if positive.size else DEFAULT_FLOOR
    ceiling = 10 * max(positive.max() if positive.size else 1.0, report.tolerance.rtol)
    zeros = nonfinite = False
    for values, steps, style in series:
        shown = np.where(values > 0, values, np.nan)             # log axis: positive only
        ax.plot(steps, shown, **style)
        style = {**style, "ls": "none", "label": None}
        is_zero, is_bad = values == 0, ~np.isfinite(values)
        if is_zero.any():
            ax.plot(steps[is_zero], np.full(int(is_zero.sum()), floor), **style)
            zeros = True
        if is_bad.any():
            ax.plot(steps[is_bad], np.full(int(is_bad.sum()), ceiling), **style)
            nonfinite = True
    ax.axhline(report.tolerance.rtol, ls=":", color="k", lw=1.0,
               label=f"rtol = {report.tolerance.rtol:g}")
    if zeros:
        ax.axhline(floor, color="0.3", lw=0.6,
                   label=f"exactly 0: drawn on this line at {floor:.1e} (a log axis has no 0)")
    if nonfinite:
        ax.axhline(ceiling, color="tab:red", lw=0.6,
                   label=f"non-finite (inf or nan): drawn on this line at {ceiling:.1e}")
    ax.set_yscale("log")
    ax.set_ylabel("difference (log axis)")
    ax.set_title(f"(b) difference to {report.reference} per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _no_comparison(report) -> str:
    if report.reference_diverged_at is not None:
        return (f"no per-step comparison: the reference {report.reference} diverged at "
                f"step {report.reference_diverged_at}")
    if all(p.diverged_at is not None for p in report.parity):
        return "no per-step comparison: every other backend diverged"
    return "no per-step comparison: no training steps were taken"
