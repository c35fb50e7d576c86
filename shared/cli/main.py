"""The ``nnparity`` command line.

Every error in the user's input (a bad flag, a bad spec file, data that does
not fit, a missing framework, a run that diverges) is printed as one line on
stderr with exit code 2, never a traceback (a data-parallel replica that was
killed too): ``main`` is the one place that
prints errors, and it escapes anything in a message that would start a new
line (a file name holding a newline, say) the way ``repr`` writes it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence

import numpy as np

from nnparity.backends import ReplicaError, get_backend, predict, train
from nnparity.shared.cli.inputs import read_inputs
from nnparity.shared.cli.spec_flags import (add_spec_flags, dataset_name, spec_flags_given,
                                           spec_from_args)
from nnparity.shared.core.datasets import load_dataset
from nnparity.shared.core.divergence import DivergenceError
from nnparity.shared.core.validation import (InputTypeError, InputValueError,
                                             MissingFrameworkError, check_int, fail)
from nnparity.shared.io.checkpoint import read_checkpoint, save_checkpoint
from nnparity.shared.io.files import check_output_path
from nnparity.shared.parity.harness import compare
from nnparity.shared.report.outputs import check_outputs, write_outputs
from nnparity.shared.report.plots import import_pyplot, plot_activations

BACKEND_NAMES = ("numpy", "torch", "jax")
#: print every parameter and prediction (as the notebook does) only for runs this small
PRINT_PARAMS_UP_TO = 200
PRINT_PREDICTIONS_UP_TO = 10


class UsageError(Exception):
    """A command-line mistake: reported in one line, exit code 2."""


#: the longest value an argparse message shows (as fail() shows values), and message
LONGEST_VALUE, LONGEST_MESSAGE = 80, 400


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage block first
        raise UsageError(shorten(message))


def shorten(message: str) -> str:
    """An argparse message with each quoted value (``invalid int value: '1000...'``)
    cut to LONGEST_VALUE characters and the whole to LONGEST_MESSAGE: argparse
    repeats what it was given, which may be a 5000-digit number or 100 kB of JSON."""
    message = re.sub(f"'[^']{{{LONGEST_VALUE},}}'",
                     lambda m: m.group()[:LONGEST_VALUE - 4] + "...'", message)
    if len(message) > LONGEST_MESSAGE:
        message = message[:LONGEST_MESSAGE - 3] + "..."
    return message


def layer_names(n_layers: int) -> list[str]:
    """The notebook's names: 'hidden' and 'output' (hidden1, hidden2, ... when deeper)."""
    if n_layers == 2:
        return ["hidden", "output"]
    return [f"hidden{k + 1}" for k in range(n_layers - 1)] + ["output"]


class Progress:
    """Prints epochs and loss on one terminal line once a run has taken 2 s."""

    def __init__(self, stream) -> None:
        self.stream, self.start, self.shown = stream, time.perf_counter(), False

    def __call__(self, done: int, total: int, loss: float) -> None:
        if time.perf_counter() - self.start < 2.0:
            return
        self.shown = True
        self.stream.write(f"\repoch {done}/{total}  loss {loss:.6g}")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")


def cmd_train(args) -> int:
    check_replica_flags(args)
    if args.save is not None:                    # before training: --save '' fails here
        check_output_path("--save", args.save)
    resume = None
    if args.resume is None:
        spec = spec_from_args(args)
    else:
        check_resume_flags(args)
        resume = read_checkpoint("--resume", args.resume)
        spec = resume.spec
        if args.epochs is not None:
            if args.epochs < resume.epochs_done:
                fail("--epochs", args.epochs, f"the total number of epochs, at least the "
                     f"{resume.epochs_done} that {args.resume} has trained")
            spec = spec.replace(epochs=args.epochs)
    data = load_dataset(dataset_name(args))
    progress = Progress(sys.stdout) if sys.stdout.isatty() else None
    result = train(spec, data, backend=args.backend, resume=resume, progress=progress,
                   replicas=args.replicas, sync_batch_norm=not args.per_replica_batch_norm)
    if progress is not None:
        progress.close()
    if not leads(args):                        # another process of a torchrun job reports
        return 0
    if resume is not None:
        print(f"resumed: {args.resume} at epoch {resume.epochs_done} of {spec.epochs}")
    if spec.n_parameters <= PRINT_PARAMS_UP_TO:
        trained = [layer for layer in result.params if layer]    # layers with parameters
        for name, layer in zip(layer_names(len(trained)), trained, strict=True):
            for key, value in layer.items():
                print(f"{name} {key}: {value}")
    if len(data.x_test) <= PRINT_PREDICTIONS_UP_TO:
        predictions = predict(spec, result.params, data.x_test, backend=args.backend,
                              model_state=result.model_state)
        print(f"predictions: {predictions}")
    print(f"error: {result.metrics['test_loss']}")
    if "test_accuracy" in result.metrics:
        print(f"accuracy: {result.metrics['test_accuracy']:.4f}")
    if args.save is not None:
        try:
            save_checkpoint(args.save, result.spec, result.params, result.opt_state,
                            epochs_done=result.epochs_done, model_state=result.model_state)
        except OSError as exc:
            fail("--save", args.save, f"a writable file path ({exc.strerror or exc})")
        print(f"saved: {args.save} ({result.epochs_done} epochs)")
    return 0


def leads(args) -> bool:
    """False in the torchrun processes of a data-parallel torch run other than rank 0:
    their results are rank 0's, which alone prints them and writes files."""
    torch = args.backend == "torch" if "backend" in args else "torch" in args.backends
    return args.replicas == 1 or not torch or os.environ.get("RANK", "0") == "0"


def check_replica_flags(args) -> None:
    if args.per_replica_batch_norm and args.replicas == 1:
        raise UsageError("--per-replica-batch-norm needs --replicas N with N > 1: on one "
                         "device BatchNorm has only one batch's statistics")


def check_resume_flags(args) -> None:
    """With --resume the spec is the checkpoint's: only --epochs (the total) may be given."""
    for flag in spec_flags_given(args):
        if flag != "--epochs":
            raise UsageError(f"{flag} cannot be used with --resume: the spec comes from the "
                             "checkpoint; only --epochs (the new total) may be given")


def cmd_predict(args) -> int:
    checkpoint = read_checkpoint("--checkpoint", args.checkpoint)
    spec = checkpoint.spec
    if len(spec.input_shape) != 1:
        fail("--checkpoint", args.checkpoint, "a network whose input rows are vectors: "
             f"--input reads rows of numbers, this one takes {spec.input_shape}")
    x = read_inputs(args, spec.input_shape[0])                 # (n, n_in) float
    for row in predict(spec, checkpoint.params, x, backend=args.backend,
                       model_state=checkpoint.model_state):    # (n, k)
        print(",".join(repr(float(value)) for value in row))
    return 0


def cmd_compare(args) -> int:
    check_replica_flags(args)
    outputs = check_outputs(args.json, args.plot, args.html)     # before any training
    spec = spec_from_args(args)
    report = compare(spec, load_dataset(dataset_name(args)),
                     backends=tuple(args.backends), reference=args.reference,
                     replicas=args.replicas, sync_batch_norm=not args.per_replica_batch_norm)
    if not leads(args):                        # another process of a torchrun job reports
        return 0 if report.ok else 1
    print(report)
    try:
        written = write_outputs(report, outputs)
    except OSError as exc:
        raise UsageError(f"could not write the report: {exc}") from None
    for path in written:
        print(f"wrote {path}")
    return 0 if report.ok else 1


def cmd_activations(args) -> int:
    check_output_path("--plot", args.plot, suffix=".png")      # before any work
    import_pyplot()                                  # missing extra: fail before any work
    for backend in args.backends:
        get_backend(backend)
    try:
        plot_activations(args.plot, args.backends)
    except OSError as exc:
        raise UsageError(f"could not write {args.plot}: {exc}") from None
    print(f"wrote {args.plot}")
    return 0


def cmd_bench(args) -> int:
    from nnparity.shared.bench import run as bench          # not on the library's import path

    check_int("--repeats", args.repeats, 5)
    if args.json is not None:
        check_output_path("--json", args.json)               # before the benchmark runs
    for backend in args.backends:
        get_backend(backend)
    result = bench.run(args.backends, repeats=args.repeats)
    print(bench.table(result))
    if args.json is not None:
        try:
            bench.write_json(result, args.json)
        except OSError as exc:
            raise UsageError(f"could not write {args.json}: {exc}") from None
        print(f"wrote {args.json}")
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="nnparity",
                    description="One network, three backends (NumPy, PyTorch, JAX), "
                                "and the proof that they agree.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train one backend and print the result "
                                              "the way the notebook does")
    train.add_argument("--backend", choices=BACKEND_NAMES, default="numpy")
    add_spec_flags(train)
    add_replica_flags(train, "train data-parallel on N replicas (docs/data-parallel.md)")
    checkpoints = train.add_argument_group("checkpoints")
    checkpoints.add_argument("--save", metavar="PATH",
                             help="write a checkpoint (.npz) after training")
    checkpoints.add_argument("--resume", metavar="PATH",
                             help="continue the run of a checkpoint, with its spec; only "
                                  "--epochs (the new total) may be given with it")
    train.set_defaults(run=cmd_train)

    predict = commands.add_parser("predict", help="print a checkpoint's predictions, one "
                                                  "line per input row")
    predict.add_argument("--checkpoint", metavar="PATH", required=True)
    predict.add_argument("--backend", choices=BACKEND_NAMES, default="numpy")
    inputs = predict.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--input", metavar="ROWS",
                        help="comma-separated features, rows separated by ';', "
                             "e.g. '28.1,58.0;31.4,45.0'")
    inputs.add_argument("--input-file", metavar="FILE",
                        help="a .csv file (one row per line, no header) or a .npy file "
                             "(a float (n, inputs) array)")
    predict.set_defaults(run=cmd_predict)

    compare = commands.add_parser("compare", help="train every backend and print the parity "
                                                  "table; exit 1 when parity fails")
    compare.add_argument("--backends", nargs="+", choices=BACKEND_NAMES,
                         default=list(BACKEND_NAMES), metavar="B",
                         help=f"backends to compare (default: {' '.join(BACKEND_NAMES)})")
    compare.add_argument("--reference", choices=BACKEND_NAMES, default="numpy")
    compare.add_argument("--json", metavar="PATH",
                         help="also write the report as JSON (docs/compare-report.md)")
    compare.add_argument("--plot", metavar="FILE.png",
                         help="also draw the loss curves and the per-step differences "
                              "(matplotlib: the plot extra)")
    compare.add_argument("--html", metavar="PATH",
                         help="also write a self-contained HTML page with the tables and "
                              "the plot (matplotlib: the plot extra)")
    add_spec_flags(compare)
    add_replica_flags(compare, "train every backend data-parallel on N replicas too, and "
                               "compare each such run against the reference and against "
                               "its own backend on one device")
    compare.set_defaults(run=cmd_compare)

    activations = commands.add_parser("activations", help="plot every activation and its "
                                                          "derivative as each backend computes it")
    activations.add_argument("--plot", metavar="FILE.png", required=True)
    activations.add_argument("--backends", nargs="+", choices=BACKEND_NAMES,
                             default=list(BACKEND_NAMES), metavar="B")
    activations.set_defaults(run=cmd_activations)

    bench = commands.add_parser("bench", help="time the backends against the tools users "
                                              "would pick instead (medians, ratios)")
    bench.add_argument("--backends", nargs="+", choices=BACKEND_NAMES,
                       default=list(BACKEND_NAMES), metavar="B")
    bench.add_argument("--repeats", type=int, default=5, metavar="N",
                       help="timed repetitions after one warm-up (default 5, at least 5)")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(run=cmd_bench)
    return parser


def add_replica_flags(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("data parallelism")
    group.add_argument("--replicas", type=int, default=1, metavar="N",
                       help=f"{what}; default 1, one device")
    group.add_argument("--per-replica-batch-norm", action="store_true",
                       help="with --replicas: BatchNorm normalises each replica's shard by "
                            "its own statistics (plain BatchNorm under DDP) instead of the "
                            "global batch's")


def one_line(text: str) -> str:
    """``text`` with every character that would end or hide a line (newlines, other
    control characters, line and paragraph separators, lone surrogates) written as
    ``repr`` writes it, e.g. "\\n"."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    np.set_printoptions()  # print arrays the way the notebook did
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (UsageError, InputValueError, InputTypeError, MissingFrameworkError,
            DivergenceError, ReplicaError) as exc:
        message = str(exc)
    except (ValueError, TypeError, ArithmeticError, RecursionError, MemoryError) as exc:
        # the last resort: input that a check missed reached code that could not
        # handle it; still one line, and the type says where to look
        message = f"{exc} ({type(exc).__name__}; not caught by a check: please report it)"
    print(f"nnparity: error: {one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
