"""Checkpoint files crafted to attack the reader (tests/test_checkpoint.py and
tests/test_cli_checkpoint.py): each starts from a valid checkpoint's arrays and
is written with ``zipfile`` directly, so every record and header is the test's."""
from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

import numpy as np

#: (offset in a local file header, offset in a central directory record, struct format)
FLAGS = (6, 8, "<H")
METHOD = (8, 10, "<H")
SIZES = (18, 20, "<II")           # compressed size, then uncompressed size


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape, descr="<f8", version=(1, 0)) -> bytes:
    """A .npy header alone (format version 1.0, 2.0 or 3.0), claiming ``shape`` of
    ``descr``, padded as np.save pads it."""
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = 6 + 2 + struct.calcsize(length_format)
    text += " " * (-(prefix + len(text) + 1) % 64) + "\n"
    return (b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(text))
            + text.encode("latin1"))


def members_of(arrays: dict) -> list[tuple[str, bytes]]:
    """The members np.savez would write for ``arrays``: ("{key}.npy", .npy bytes)."""
    return [(f"{key}.npy", npy_bytes(value)) for key, value in arrays.items()]


def zip_bytes(members, compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of ``members`` [(name, data), ...] (a name may repeat)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # zipfile warns of a duplicate name
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return buffer.getvalue()


def patched(data: bytes, field, *values, names=None) -> bytes:
    """``data`` with ``field`` (FLAGS, METHOD, SIZES) set to ``values`` in the local
    header and the central directory record of every member (or of ``names``)."""
    local, central, fmt = field
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    record = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    for info in infos:
        if names is None or info.filename in names:
            struct.pack_into(fmt, out, info.header_offset + local, *values)
            struct.pack_into(fmt, out, record + central, *values)
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data,
                                                                       record + 28)
        record += 46 + name_length + extra_length + comment_length
    return bytes(out)


def replace_member(members, name, data):
    return [(n, data if n == name else d) for n, d in members]


def crafted_files(arrays: dict) -> dict[str, tuple[bytes, str]]:
    """name -> (the file's bytes, text the ValueError must contain), crafted from the
    valid checkpoint ``arrays`` of a float64 network of 2 Dense layers (flat names
    0.* and 2.*, an Activation between) with Adam's state."""
    members = members_of(arrays)
    w, b = arrays["params.0.weight"], arrays["params.0.bias"]
    huge = (10**6, 10**6)                                        # 8 TB of float64
    spec = json.loads(str(arrays["spec"][()]))
    # the largest first layer a spec allows (at most 2**32 - 1 parameters): 34 GB
    wide = (255, 2**24)                                          # weight is (out, in)
    huge_spec = json.dumps({**spec, "sizes": [wide[1], wide[0]] + spec["sizes"][2:]})
    return {
        "big-endian-param": (
            zip_bytes(members_of({**arrays, "params.0.weight": w.astype(">f8")})),
            f"entry 'params.0.weight' is >f8 {w.shape}, expected float64 {w.shape}"),
        "deflated": (zip_bytes(members, zipfile.ZIP_DEFLATED), "compressed (zip method 8)"),
        "bzip2": (zip_bytes(members, zipfile.ZIP_BZIP2), "compressed (zip method 12)"),
        "lzma": (zip_bytes(members, zipfile.ZIP_LZMA), "compressed (zip method 14)"),
        "unknown-compression-method": (patched(zip_bytes(members), METHOD, 99),
                                       "compressed (zip method 99)"),
        "encrypted-flag": (patched(zip_bytes(members), FLAGS, 1), "is encrypted"),
        "header-claims-a-huge-shape": (
            zip_bytes(replace_member(members, "params.0.weight.npy",
                                     npy_header(huge) + w.tobytes())),
            f"entry 'params.0.weight' is float64 (1000000, 1000000), expected float64 {w.shape}"),
        "spec-and-header-claim-a-huge-shape": (
            zip_bytes(replace_member(replace_member(
                members, "spec.npy", npy_bytes(np.array(huge_spec))),
                "params.0.weight.npy", npy_header(wide) + w.tobytes())),
            (f"entry 'params.0.weight' holds {w.nbytes} bytes of data, but its header float64 "
             f"{wide} needs {8 * wide[0] * wide[1]}")),
        "record-claims-more-bytes-than-the-file": (
            patched(zip_bytes(members), SIZES, 2**31 - 1, 2**31 - 1,
                    names={"params.2.bias.npy"}),
            "entry 'params.2.bias' claims 2147483647 bytes, more than the file's"),
        "trailing-bytes-after-the-data": (
            zip_bytes(replace_member(members, "params.0.bias.npy",
                                     npy_bytes(b) + bytes(8))),
            (f"entry 'params.0.bias' holds {b.nbytes + 8} bytes of data, but its header "
             f"float64 {b.shape} needs {b.nbytes}")),
        "malformed-npy-header": (
            zip_bytes(replace_member(members, "params.0.weight.npy",
                                     b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8 \n")),
            "entry 'params.0.weight' has a malformed .npy header"),
        "not-npy-data": (zip_bytes(replace_member(members, "params.0.weight.npy", b"hello")),
                         "entry 'params.0.weight' has a malformed .npy header"),
        "npy-version-3": (
            zip_bytes(replace_member(members, "params.0.weight.npy",
                                     npy_header(w.shape, version=(3, 0)) + w.tobytes())),
            ".npy format version (3, 0)"),
        "member-not-npy": (zip_bytes(members + [("notes.txt", b"hi")]),
                           "member 'notes.txt' is not an .npy array"),
        "duplicate-entry": (zip_bytes(members + [("params.0.weight.npy", npy_bytes(w))]),
                            "entry 'params.0.weight' appears more than once"),
        "spec-nested-too-deeply": (
            zip_bytes(replace_member(members, "spec.npy",
                                     npy_bytes(np.array("[" * 100_000 + "]" * 100_000)))),
            "nested too deeply"),
        "spec-entry-too-long": (
            zip_bytes(replace_member(members, "spec.npy",
                                     npy_bytes(np.array(" " * (2**20 + 1))))),
            ("entry 'spec' is a unicode string of length 1048577, expected a unicode string "
             "of at most 1048576 characters")),
        "format-entry-too-long": (
            zip_bytes(replace_member(members, "format.npy", npy_bytes(np.array("x" * 65)))),
            ("entry 'format' is a unicode string of length 65, expected a unicode string "
             "of at most 64 characters")),
    }
