"""Building a ``NetworkSpec`` from command-line flags.

The base is ``--spec FILE.json`` (``-`` reads stdin), ``--recipe NAME`` or the
notebook's spec;
every flag given overrides one field. Optimizer flags change the base
optimizer's arguments when ``--optimizer`` names the same optimizer (or is not
given), and start from the named optimizer's defaults otherwise.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.io.files import open_input, read_bounded
from nnparity.shared.core.losses import LOSSES
from nnparity.shared.core.optimizers import OPTIMIZERS
from nnparity.shared.core.recipes import RECIPES
from nnparity.shared.core.spec import INITS, NetworkSpec, notebook_spec
from nnparity.shared.core.validation import (FLOAT_DTYPES, InputTypeError, InputValueError, fail,
                                             parse_json)

#: flag destination -> optimizer argument it sets
OPTIMIZER_FLAGS = {"lr": "lr", "momentum": "momentum", "dampening": "dampening",
                   "nesterov": "nesterov", "weight_decay": "weight_decay", "betas": "betas",
                   "eps": "eps", "alpha": "alpha", "centered": "centered"}


def _int_list(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag}={text!r} is not allowed: expected comma-separated integers, "
                "e.g. 64,64,10") from None
    return parse


def _float_pair(text: str) -> tuple[float, float]:
    try:
        pair = tuple(float(part) for part in text.split(","))
    except ValueError:
        pair = ()
    if len(pair) != 2:
        raise argparse.ArgumentTypeError(
            f"--betas={text!r} is not allowed: expected two comma-separated numbers, "
            "e.g. 0.9,0.999")
    return pair


def parse_json_object(flag: str, text: str) -> dict:
    """The JSON object a flag's value holds (``--loss-params '{"delta": 2}'``). Text
    that is not JSON, nested too deeply to parse, holds an integer longer than
    Python reads or a key twice, or is not an object is a ValueError naming
    the flag."""
    value = parse_json(flag, text, "a JSON object")
    if not isinstance(value, dict):
        fail(flag, text, "a JSON object")
    return value


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for every NetworkSpec field, the optimizer's arguments and the dataset."""
    group = parser.add_argument_group("network spec (each flag overrides --spec)")
    group.add_argument("--spec", metavar="FILE.json",
                       help="spec as JSON ('-' or /dev/stdin reads stdin); "
                            "default: the notebook's")
    group.add_argument("--recipe", choices=tuple(RECIPES),
                       help="a named spec, trained on its own dataset unless --dataset is "
                            "given: notebook; digits_cnn (on digits_images); digits_gru, "
                            "digits_lstm (on digits_rows); zen_transformer, zen_gru (on zen)")
    group.add_argument("--sizes", type=_int_list("--sizes"), metavar="N,N,...",
                       help="layer widths, input first, e.g. 64,64,10")
    group.add_argument("--activation", metavar="NAME[,NAME...]",
                       help=f"hidden activation, or one per hidden layer: {', '.join(ACTIVATIONS)}")
    group.add_argument("--activation-params", metavar="JSON",
                       help='e.g. \'{"leaky_relu": {"negative_slope": 0.1}}\'')
    group.add_argument("--init", choices=INITS)
    group.add_argument("--loss", choices=tuple(LOSSES))
    group.add_argument("--loss-params", metavar="JSON",
                       help='e.g. \'{"delta": 2.0}\' for huber')
    group.add_argument("--batch-size", type=int, metavar="N")
    group.add_argument("--epochs", type=int, metavar="N")
    group.add_argument("--seed", type=int, metavar="N")
    group.add_argument("--dtype", choices=FLOAT_DTYPES)
    group.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None)

    opt = parser.add_argument_group("optimizer (torch.optim's arguments)")
    opt.add_argument("--optimizer", choices=tuple(OPTIMIZERS))
    opt.add_argument("--lr", type=float)
    opt.add_argument("--momentum", type=float, help="sgd, rmsprop")
    opt.add_argument("--dampening", type=float, help="sgd")
    opt.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                     help="sgd")
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--betas", type=_float_pair, metavar="B1,B2", help="adam, adamw")
    opt.add_argument("--eps", type=float, help="adam, adamw, rmsprop")
    opt.add_argument("--alpha", type=float, help="rmsprop's smoothing constant")
    opt.add_argument("--centered", action=argparse.BooleanOptionalAction, default=None,
                     help="rmsprop")

    parser.add_argument("--dataset", default=None,
                        help="notebook (default), digits, digits_images (1x8x8 images), "
                             "digits_rows (8 rows of 8 pixels), zen (the Zen of Python's "
                             "characters) or diabetes; see load_dataset")


#: argparse destinations of add_spec_flags' spec and optimizer flags (all default to None)
SPEC_DESTS = ("spec", "recipe", "sizes", "activation", "activation_params", "init", "loss",
              "loss_params", "batch_size", "epochs", "seed", "dtype", "shuffle", "optimizer",
              *OPTIMIZER_FLAGS)


def spec_flags_given(args: argparse.Namespace) -> list[str]:
    """The spec and optimizer flags given on the command line, e.g. ["--lr"]."""
    return ["--" + dest.replace("_", "-") for dest in SPEC_DESTS
            if getattr(args, dest) is not None]


#: the longest --spec read, in bytes (a spec's JSON is well under a kilobyte)
MAX_SPEC_BYTES = 2**20


def read_spec_file(path: str) -> NetworkSpec:
    """The spec in the JSON file ``path`` ("-" or /dev/stdin: standard input), at
    most MAX_SPEC_BYTES bytes of UTF-8; a path must name a regular file
    (``files.open_input``: a FIFO or /dev/zero is refused, never read)."""
    if path in ("-", "/dev/stdin"):
        stream = getattr(sys.stdin, "buffer", sys.stdin)     # text when tests replace it
        data = stream.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            fail("--spec", path, f"a JSON file of at most {MAX_SPEC_BYTES} bytes")
    else:
        with open_input("--spec", path, max_bytes=MAX_SPEC_BYTES) as f:
            try:
                data = read_bounded("--spec", path, f, MAX_SPEC_BYTES)
            except OSError as exc:
                fail("--spec", path, f"a readable file ({exc.strerror or exc})")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            fail("--spec", path, f"UTF-8 JSON text (byte {exc.start} is "
                                 f"{exc.object[exc.start:exc.start + 1]!r})")
    try:
        return NetworkSpec.from_json(data)
    except (InputValueError, InputTypeError):
        raise
    except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        # what NetworkSpec did not name itself (an int too large for a float field)
        fail("--spec", path, f"a valid spec ({type(exc).__name__}: {exc})")


def dataset_name(args: argparse.Namespace) -> str:
    """``--dataset``, else the ``--recipe``'s dataset, else the notebook's."""
    if args.dataset:
        return args.dataset
    return RECIPES[args.recipe].dataset if getattr(args, "recipe", None) else "notebook"


def spec_fields_from_args(args: argparse.Namespace) -> dict:
    """The spec fields the flags give (JSON flags parsed), as NetworkSpec.replace takes them."""
    changes = {}
    if args.sizes is not None:
        changes["sizes"] = args.sizes
    if args.activation is not None:
        names = tuple(args.activation.split(","))
        changes["activation"] = names[0] if len(names) == 1 else names
    for field in ("activation_params", "loss_params"):
        if getattr(args, field) is not None:
            changes[field] = parse_json_object("--" + field.replace("_", "-"),
                                               getattr(args, field))
    for field in ("init", "loss", "batch_size", "epochs", "seed", "dtype", "shuffle"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    return changes


def spec_from_args(args: argparse.Namespace) -> NetworkSpec:
    """The spec the flags describe (validated by NetworkSpec and the optimizer)."""
    changes = spec_fields_from_args(args)           # flags' own errors before the file's
    if args.spec and args.recipe:
        fail("--recipe", args.recipe, "no --recipe with --spec (each gives the whole spec; "
             "flags then change its fields)")
    if args.spec:
        base = read_spec_file(args.spec)
    else:
        base = RECIPES[args.recipe].spec("float64") if args.recipe else notebook_spec()
    if "loss" in changes and "loss_params" not in changes and changes["loss"] != base.loss:
        changes["loss_params"] = {}
    if base.sizes is None and "sizes" not in changes:
        for field in ("activation", "activation_params"):
            if field in changes:
                flag = "--" + field.replace("_", "-")
                base_flag = "--recipe" if args.recipe else "--spec"
                fail(flag, getattr(args, field), f"no {flag} with a {base_flag} whose network "
                     "is given as layers (give its Activation layers in a --spec file, or "
                     "--sizes)")
    if "activation" in changes and "activation_params" not in changes:
        names = set(changes["activation"] if isinstance(changes["activation"], tuple)
                    else (changes["activation"],))
        # keep the base's parameters of names still used
        changes["activation_params"] = {k: v for k, v in (base.activation_params or {}).items()
                                        if k in names}
    changes["optimizer"] = optimizer_from_args(args, base.optimizer)
    try:
        return base.replace(**changes)
    except (InputValueError, InputTypeError):
        raise
    except (ArithmeticError, RecursionError) as exc:
        # what NetworkSpec did not name itself (an int too large for a float field)
        given = {flag: text for flag, text in (("--loss-params", args.loss_params),
                                               ("--activation-params", args.activation_params))
                 if text is not None}
        name, value = next(iter(given.items())) if len(given) == 1 else ("spec flags", given)
        fail(name, value, f"numbers that fit a float64 ({type(exc).__name__}: {exc})")


def optimizer_from_args(args: argparse.Namespace, base):
    name = args.optimizer or base.name
    cls = OPTIMIZERS[name]
    allowed = {f.name for f in fields(cls)}
    kwargs = {f.name: getattr(base, f.name) for f in fields(base)} if name == base.name else {}
    for dest, argument in OPTIMIZER_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if argument not in allowed:
            fail(f"--{dest.replace('_', '-')}", value,
                 f"only arguments of {cls.__name__}: {', '.join(sorted(allowed))}")
        kwargs[argument] = value
    if name == "sgd" and "lr" not in kwargs:
        fail("--lr", None, "a learning rate for sgd (SGD has no default lr)")
    return cls(**kwargs)
