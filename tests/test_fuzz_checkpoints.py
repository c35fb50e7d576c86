"""Fuzzing the checkpoint reader (issue 17): mutated checkpoint files.

Targets, each a hypothesis test: byte flips anywhere, truncation (at every zip
record boundary exhaustively, and anywhere), rewritten ``.npy`` headers (bad
keys, bytes keys, huge, negative or odd shapes, wrong dtypes, fortran_order
tricks, other format versions and header lengths, pickled payloads), declared
shapes far larger than the file (in the embedded spec, the header and the zip
record alike) and rewritten zip record fields.

The property, for every file: ``load_checkpoint`` returns a valid Checkpoint
(for mutations that cannot change the content: the very same one) or raises a
ValueError naming the file, within a time bound, while allocating no more than
a small multiple of the file's size (tracemalloc sees numpy's allocations);
nothing in the file is executed.

The default ("ci") profile runs ``settings.default.max_examples`` examples per
target (derandomized); ``--hypothesis-profile fuzz`` (or ``thorough``) runs
many more. ``--hypothesis-show-statistics`` prints the counts and the outcomes
(``event``) of each target.
"""
from __future__ import annotations

import functools
import io
import json
import os
import pickle
import struct
import tempfile
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from crafted_checkpoints import members_of, replace_member, zip_bytes
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from nnparity.shared import (SGD, Activation, Adam, Checkpoint, Dense, NetworkSpec, RMSprop,
                             load_checkpoint)
from nnparity.shared.io.checkpoint import checkpoint_arrays
from nnparity.shared.core.init import init_params
from nnparity.shared.core.tree import map_tree
from nnparity.shared.core.optimizers import init_state
from conftest import deadline

#: examples per target: the profile's count (50 in "ci"), so "fuzz" scales every target
EXAMPLES = settings.default.max_examples
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
#: seconds one load may take (a valid one takes about 3 ms)
TIME_BOUND = 10.0
#: bytes a load may allocate: a fixed allowance (zipfile, json, numpy) and a multiple
#: of the file's size (a valid 4 KB file peaks at about 220 KB)
ALLOWANCE, PER_BYTE = 2**21, 16


# ---------------------------------------------------------------- valid files

SPECS = {
    "sgd-2-3-1": NetworkSpec(sizes=(2, 3, 1), optimizer=SGD(lr=0.1), epochs=2),
    "adam-3-4-2-float32": NetworkSpec(sizes=(3, 4, 2), optimizer=Adam(lr=0.01), epochs=3,
                                      dtype="float32"),
    "sgd-momentum-1-2-2-1": NetworkSpec(sizes=(1, 2, 2, 1), activation="tanh",
                                        optimizer=SGD(lr=0.1, momentum=0.9), epochs=1),
    # the general layer form, not an MLP: flat names 0.*, 2.*, 3.*
    "layers-rmsprop-2-4-3-1": NetworkSpec(
        input_shape=(2,), layers=(Dense(4), Activation("tanh"), Dense(3), Dense(1)),
        optimizer=RMSprop(lr=0.01, centered=True), epochs=2),
}


@functools.cache
def valid_file(name: str, with_state: bool) -> tuple[bytes, dict]:
    """(the bytes save_checkpoint writes, the arrays) for SPECS[name]."""
    spec = SPECS[name]
    rng = np.random.default_rng(len(name))
    params = map_tree(lambda a: rng.standard_normal(a.shape).astype(spec.dtype),
                      init_params(spec))
    state = init_state(spec.optimizer, params)._replace(step=4) if with_state else None
    arrays = checkpoint_arrays(Checkpoint(spec, params, state, 1))
    from nnparity.shared import save_checkpoint
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "c.npz")
        save_checkpoint(path, spec, params, state, epochs_done=1)
        with open(path, "rb") as f:
            return f.read(), arrays


BASES = [(name, state) for name in SPECS for state in (False, True)]
bases = st.sampled_from(BASES)


# ---------------------------------------------------------------- the property

class Sentinel:
    """Unpickling it creates ``path``: proof that pickled data was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))




def same_checkpoint(a: Checkpoint, arrays: dict) -> bool:
    return checkpoint_arrays(a).keys() == arrays.keys() and all(
        np.array_equal(value, arrays[key]) and value.dtype == arrays[key].dtype
        for key, value in checkpoint_arrays(a).items())


def check_load(data: bytes, original: dict | None = None) -> str:
    """Write ``data`` to a fresh file and load it: the property (see the module
    docstring). ``original``: the arrays a successful load must give back (None when
    the mutation may change them validly). Returns "loaded" or "refused"."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "fuzzed.npz")
        with open(path, "wb") as f:
            f.write(data)
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with deadline(TIME_BOUND, "load_checkpoint"):
                checkpoint = load_checkpoint(path)
        except ValueError as exc:
            message = str(exc)
            assert type(exc).__name__ == "InputValueError", repr(exc)
            assert message.startswith(f"checkpoint {path}: ") or f"path={path!r}" in message, (
                message)
            outcome = "refused"
        else:
            assert isinstance(checkpoint, Checkpoint)
            if original is not None:
                assert same_checkpoint(checkpoint, original), "a mutation changed the content"
            outcome = "loaded"
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert time.perf_counter() - started < TIME_BOUND
        assert peak <= ALLOWANCE + PER_BYTE * len(data), (
            f"{peak} bytes allocated for a file of {len(data)}")
        assert os.listdir(directory) == ["fuzzed.npz"]          # nothing written
    if currently_in_test_context():          # hypothesis' statistics: what was found
        event("loaded" if outcome == "loaded" else f"refused: {message.split(': ', 1)[1][:48]}")
    return outcome


def test_negative_control_the_valid_files_load_and_the_property_catches_a_change():
    for name, state in BASES:
        data, arrays = valid_file(name, state)
        assert check_load(data, arrays) == "loaded"
        changed = {**arrays, "epochs_done": np.array(0, np.int64)}
        with pytest.raises(AssertionError, match="changed the content"):
            check_load(data, changed)
    data, _ = valid_file(*BASES[0])
    with pytest.raises(AssertionError, match="bytes allocated"):
        with_allowance(0, lambda: check_load(data))


def with_allowance(allowance: int, run):
    """Negative control of the memory bound: with no allowance a valid load fails it."""
    global ALLOWANCE, PER_BYTE
    saved = ALLOWANCE, PER_BYTE
    ALLOWANCE, PER_BYTE = allowance, 0
    try:
        return run()
    finally:
        ALLOWANCE, PER_BYTE = saved


# ---------------------------------------------------------------- (1) byte flips

@FUZZ
@given(base=bases, data=st.data())
def test_byte_flips(base, data):
    """Up to 8 bytes anywhere XORed with a nonzero value: refused, or (a flip in
    bytes the reader ignores: timestamps, version fields) the same checkpoint."""
    raw, arrays = valid_file(*base)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                               min_size=1, max_size=8), label="flips")
    mutated = bytearray(raw)
    for position, mask in flips:
        mutated[position] ^= mask
    check_load(bytes(mutated), None if bytes(mutated) == raw else arrays)


# ---------------------------------------------------------------- (2) truncation

def record_offsets(raw: bytes) -> list[int]:
    """Where each zip record starts: local headers, central records, the end record."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        infos = archive.infolist()
    offsets = [info.header_offset for info in infos]
    end = raw.rfind(b"PK\x05\x06")
    central = struct.unpack_from("<I", raw, end + 16)[0]
    record = central
    for _ in infos:
        offsets.append(record)
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", raw,
                                                                       record + 28)
        record += 46 + name_length + extra_length + comment_length
    offsets.append(end)
    # and where each member's data starts (after its local header and name)
    offsets += [info.header_offset + 30 + len(info.filename) for info in infos]
    return sorted(set(offsets))


@pytest.mark.parametrize("base", BASES, ids=[f"{n}-{'state' if s else 'params'}"
                                              for n, s in BASES])
def test_truncation_at_every_zip_record(base):
    """Every cut at a record boundary, one byte either side of it, and the last byte:
    a truncated file is always refused (exhaustive, not sampled)."""
    raw, _ = valid_file(*base)
    cuts = {max(0, min(len(raw) - 1, offset + d)) for offset in record_offsets(raw)
            for d in (-1, 0, 1)} | {len(raw) - 1}
    assert len(cuts) > 20
    for cut in sorted(cuts):
        assert check_load(raw[:cut]) == "refused", cut


@FUZZ
@given(base=bases, data=st.data())
def test_truncation_anywhere(base, data):
    raw, _ = valid_file(*base)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    assert check_load(raw[:cut]) == "refused"


# ---------------------------------------------------------------- (3) .npy headers

HUGE_INTS = [2**31, 2**32 + 1, 2**62, 2**63, 2**64, 10**30]
dims = st.one_of(st.integers(0, 5), st.integers(-3, -1), st.sampled_from(HUGE_INTS),
                 st.booleans(), st.floats(allow_nan=True), st.just("3"), st.none())
shapes = st.one_of(
    st.lists(dims, max_size=4).map(tuple),
    st.lists(st.integers(0, 5), max_size=3),                    # a list, not a tuple
    st.tuples(st.tuples(st.integers(0, 3))),                    # nested
    st.integers(0, 5),
)
descrs = st.one_of(
    st.sampled_from(["<f8", "<f4", ">f8", ">f4", "<f2", "<i8", "|u1", "|b1", "<c16", "<U5",
                     "<U0", "|S3", "|O", "|V8", "<M8[s]", "<m8", "=f8", "|f8", "f8", "d",
                     "object", "float64"]),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.just([("a", "<f8")]),
    st.just([("a", "|O")]),
    st.integers(),
)
fortran_orders = st.one_of(st.booleans(), st.integers(-1, 2), st.none(), st.just("True"))
STR_KEYS = ("descr", "fortran_order", "shape")


@st.composite
def header_texts(draw, entry_shape, entry_descr):
    """A header dict's text: mostly the entry's own, with some fields rewritten."""
    fields = {"descr": entry_descr, "fortran_order": False, "shape": entry_shape}
    for key in STR_KEYS:
        if draw(st.booleans()):
            fields[key] = draw({"descr": descrs, "fortran_order": fortran_orders,
                                "shape": shapes}[key])
    d = dict(fields)
    keys = draw(st.sampled_from(["str"] * 6 + ["bytes-key", "missing-key", "extra-key",
                                               "int-key", "not-a-dict", "garbage"]))
    if keys == "bytes-key":
        key = draw(st.sampled_from(STR_KEYS))
        d[key.encode()] = d.pop(key)
    elif keys == "missing-key":
        d.pop(draw(st.sampled_from(STR_KEYS)))
    elif keys == "extra-key":
        d[draw(st.sampled_from(["extra", "shape2", "Descr"]))] = 1
    elif keys == "int-key":
        d[0] = d.pop(draw(st.sampled_from(STR_KEYS)))
    if keys == "not-a-dict":
        return repr(list(d.items()))
    if keys == "garbage":
        return draw(st.text(max_size=60))
    return repr(d)


def npy_with_header(text: str, version: tuple, length: int | None, data: bytes) -> bytes:
    body = text + " " * (-(12 + len(text) + 1) % 64) + "\n"
    raw = body.encode("latin1", "replace") if version != (3, 0) else body.encode("utf8")
    length_format = "<H" if version in ((1, 0), (0, 0)) else "<I"
    if length is None:
        length = len(raw)
    length = min(length, 2**(8 * struct.calcsize(length_format)) - 1)
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, length) + raw + data


@FUZZ
@given(base=bases, data=st.data())
def test_rewritten_npy_headers(base, data, tmp_path_factory):
    """One entry's .npy header rewritten (keys, descr, fortran_order, shape, format
    version, declared length) and its data exact, short, long, empty, random or a
    pickle whose unpickling would create a file."""
    _, arrays = valid_file(*base)
    key = data.draw(st.sampled_from(sorted(arrays)), label="entry")
    array = arrays[key]
    text = data.draw(header_texts(array.shape, array.dtype.str), label="header")
    version = data.draw(st.sampled_from([(1, 0), (1, 0), (2, 0), (3, 0), (0, 0), (255, 1)]),
                        label="version")
    length = data.draw(st.one_of(st.none(), st.none(), st.integers(0, 2**32 - 1)),
                       label="declared header length")
    payload = data.draw(st.sampled_from(["exact", "short", "long", "empty", "random",
                                         "pickle"]), label="data")
    directory = tmp_path_factory.mktemp("pickle")
    body = {"exact": array.tobytes(), "short": array.tobytes()[:-1],
            "long": array.tobytes() + b"\0" * 8, "empty": b"",
            "random": data.draw(st.binary(max_size=128), label="random data"),
            "pickle": pickle.dumps(Sentinel(str(directory / "executed")))}[payload]
    entry = npy_with_header(text, version, length, body)
    mutated = zip_bytes(replace_member(members_of(arrays), f"{key}.npy", entry))
    check_load(mutated)
    assert not (directory / "executed").exists(), "pickled data was executed"


# ---------------------------------------------------------------- (4) declared shapes

widths = st.one_of(st.integers(1, 4), st.sampled_from([2**20, 2**24, 2**24 + 1, 2**31,
                                                       2**40, 10**20]))


@FUZZ
@given(base=bases, data=st.data())
def test_oversized_declared_shapes(base, data):
    """The embedded spec asks for wide layers (up to the bounds and beyond), the
    header of a layer's entry claims the shape it implies, and its zip record claims
    the bytes that shape needs (or the few it stores), while the file holds almost
    nothing: refused without allocating what is claimed."""
    _, arrays = valid_file(*base)
    spec = json.loads(str(arrays["spec"][()]))
    if "sizes" in spec:                                    # the MLP shorthand
        dense = [2 * i for i in range(len(spec["sizes"]) - 1)]
    else:                                                  # the layer form
        dense = [i for i, layer in enumerate(spec["layers"]) if layer["kind"] == "dense"]
    sizes = data.draw(st.lists(widths, min_size=len(dense) + 1, max_size=len(dense) + 1),
                      label="widths")
    if "sizes" in spec:
        spec["sizes"] = sizes
    else:
        spec["input_shape"] = sizes[:1]
        for j, index in enumerate(dense):
            spec["layers"][index]["units"] = sizes[j + 1]
    j = data.draw(st.integers(0, len(dense) - 1), label="dense layer")
    part = data.draw(st.sampled_from(["weight", "bias"]), label="part")
    key = f"params.{dense[j]}.{part}"
    claimed = (sizes[j + 1], sizes[j]) if part == "weight" else (sizes[j + 1],)
    header = npy_with_header(repr({"descr": arrays[key].dtype.str, "fortran_order": False,
                                   "shape": claimed}), (1, 0), None, bytes(8))
    members = replace_member(members_of({**arrays, "spec": np.array(json.dumps(spec))}),
                             f"{key}.npy", header)
    mutated = bytearray(zip_bytes(members))
    if data.draw(st.booleans(), label="record claims the data too"):
        data_bytes = int(np.prod(claimed, dtype=object)) * arrays[key].dtype.itemsize
        claim = min(len(header) - 8 + data_bytes, 2**32 - 1)
        patch_record(mutated, f"{key}.npy", {"file_size": claim})
    check_load(bytes(mutated))


# ---------------------------------------------------------------- (5) zip record fields

#: field -> (offset in a local header, offset in a central record, struct format);
#: None where the record has no such field
FIELDS = {
    "version": (4, 6, "<H"), "flags": (6, 8, "<H"), "method": (8, 10, "<H"),
    "time": (10, 12, "<H"), "crc": (14, 16, "<I"), "compress_size": (18, 20, "<I"),
    "file_size": (22, 24, "<I"), "name_length": (26, 28, "<H"),
    "extra_length": (28, 30, "<H"), "comment_length": (None, 32, "<H"),
    "disk": (None, 34, "<H"), "external_attributes": (None, 38, "<I"),
    "header_offset": (None, 42, "<I"),
}
END_FIELDS = {"disk": (4, "<H"), "entries_here": (8, "<H"), "entries": (10, "<H"),
              "central_size": (12, "<I"), "central_offset": (16, "<I"),
              "comment_length": (20, "<H")}


def patch_record(data: bytearray, name: str, values: dict, where=("local", "central")):
    """Set ``values`` {field: value} in the local and/or central record of member
    ``name`` of the zip ``data``, in place."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        infos = archive.infolist()
    record = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    for info in infos:
        lengths = struct.unpack_from("<HHH", data, record + 28)
        if info.filename == name:
            for field, value in values.items():
                local, central, fmt = FIELDS[field]
                value %= 2**(8 * struct.calcsize(fmt))
                if "local" in where and local is not None:
                    struct.pack_into(fmt, data, info.header_offset + local, value)
                if "central" in where:
                    struct.pack_into(fmt, data, record + central, value)
        record += 46 + sum(lengths)


@FUZZ
@given(base=bases, data=st.data())
def test_zip_record_fields(base, data):
    """A few fields of a member's local and/or central record, or of the end
    record, set to edge or random values: refused, or (a field the reader ignores)
    the same checkpoint."""
    raw, arrays = valid_file(*base)
    mutated = bytearray(raw)
    values = st.one_of(st.sampled_from([0, 1, 2**15, 2**16 - 1, 2**31 - 1, 2**32 - 1]),
                       st.integers(0, 2**32 - 1), st.integers(0, len(raw) + 64))
    if data.draw(st.booleans(), label="member record (else the end record)"):
        name = data.draw(st.sampled_from(sorted(f"{key}.npy" for key in arrays)),
                         label="member")
        changes = data.draw(st.lists(st.tuples(st.sampled_from(sorted(FIELDS)), values),
                                     min_size=1, max_size=3).map(dict), label="fields")
        where = data.draw(st.sampled_from([("local",), ("central",), ("local", "central")]),
                          label="records")
        patch_record(mutated, name, changes, where)
    else:
        end = raw.rfind(b"PK\x05\x06")
        changes = data.draw(st.lists(st.tuples(st.sampled_from(sorted(END_FIELDS)), values),
                                     min_size=1, max_size=3).map(dict), label="end fields")
        for field, value in changes.items():
            offset, fmt = END_FIELDS[field]
            struct.pack_into(fmt, mutated, end + offset, value % 2**(8 * struct.calcsize(fmt)))
    mutated = bytes(mutated)
    check_load(mutated, None if mutated == raw else arrays)
