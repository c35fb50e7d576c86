"""The ``nnparity`` command line.

Every error in the user's input (a bad flag, a bad spec file, a missing
framework) is printed as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from .data import notebook_data
from .spec import NetworkSpec, notebook_spec
from .validation import InputTypeError, InputValueError, MissingFrameworkError

BACKEND_NAMES = ("numpy", "torch", "jax")


class UsageError(Exception):
    """A command-line mistake: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage block first
        raise UsageError(message)


def load_spec(path: str | None) -> NetworkSpec:
    """The spec in JSON file ``path`` ("-" reads stdin), or the notebook's spec."""
    if path is None:
        return notebook_spec()
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise UsageError(f"--spec {path}: cannot read: {exc.strerror}") from None
    return NetworkSpec.from_json(text)


def layer_names(n_layers: int) -> list[str]:
    """The notebook's names: 'hidden' and 'output' (hidden1, hidden2, ... when deeper)."""
    if n_layers == 2:
        return ["hidden", "output"]
    return [f"hidden{k + 1}" for k in range(n_layers - 1)] + ["output"]


def cmd_train(args) -> int:
    from nnparity.backends import predict, train
    from nnparity.backends.numpy import mse_loss

    spec, data = load_spec(args.spec), notebook_data()
    result = train(spec, data, backend=args.backend)
    for name, (w, b) in zip(layer_names(len(result.params)), result.params):
        print(f"{name} weight: {w}")
        print(f"{name} bias: {b}")
    predictions = predict(spec, result.params, data.x_test, backend=args.backend)
    print(f"predictions: {predictions}")
    print(f"error: {mse_loss(predictions, data.y_test)}")
    return 0


def cmd_compare(args) -> int:
    from .harness import compare

    spec = load_spec(args.spec)
    report = compare(spec, notebook_data(), backends=tuple(args.backends),
                     reference=args.reference)
    print(report)
    return 0 if report.ok else 1


def cmd_activations(args) -> int:
    from nnparity.backends import get_backend

    from .plots import import_pyplot, plot_activations

    import_pyplot()                                  # missing extra: fail before any work
    for backend in args.backends:
        get_backend(backend)
    plot_activations(args.plot, args.backends)
    print(f"wrote {args.plot}")
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="nnparity",
                    description="One network, three backends (NumPy, PyTorch, JAX), "
                                "and the proof that they agree.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train one backend and print the result "
                                              "the way the notebook does")
    train.add_argument("--backend", choices=BACKEND_NAMES, default="numpy")
    train.add_argument("--spec", metavar="FILE.json",
                       help="network spec as JSON ('-' reads stdin); default: the notebook's")
    train.set_defaults(run=cmd_train)

    compare = commands.add_parser("compare", help="train every backend and print the parity "
                                                  "table; exit 1 when parity fails")
    compare.add_argument("--backends", nargs="+", choices=BACKEND_NAMES,
                         default=list(BACKEND_NAMES), metavar="B",
                         help=f"backends to compare (default: {' '.join(BACKEND_NAMES)})")
    compare.add_argument("--reference", choices=BACKEND_NAMES, default="numpy")
    compare.add_argument("--spec", metavar="FILE.json",
                         help="network spec as JSON ('-' reads stdin); default: the notebook's")
    compare.set_defaults(run=cmd_compare)

    activations = commands.add_parser("activations", help="plot every activation and its "
                                                          "derivative as each backend computes it")
    activations.add_argument("--plot", metavar="FILE.png", required=True)
    activations.add_argument("--backends", nargs="+", choices=BACKEND_NAMES,
                             default=list(BACKEND_NAMES), metavar="B")
    activations.set_defaults(run=cmd_activations)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    np.set_printoptions()  # print arrays the way the notebook did
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (UsageError, InputValueError, InputTypeError, MissingFrameworkError) as exc:
        print(f"nnparity: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
