"""Output files (nnparity.shared.io.files): the path check every writer and flag uses,
and the atomic write (whole new file or the old one, no temporary left, ordinary
permissions)."""
from __future__ import annotations

import os
import stat

import pytest
from nnparity.shared.io import files
from nnparity.shared.io.files import check_output_path, write_atomic

# ---------------------------------------------------------------- check_output_path

class BytesPath:
    """An os.PathLike whose path is bytes."""

    def __fspath__(self):
        return b"r.json"


@pytest.mark.parametrize("path, suffix, error, allowed", [
    (3, None, TypeError, "a file path (str or os.PathLike)"),
    (None, None, TypeError, "a file path (str or os.PathLike)"),
    (b"r.json", None, TypeError, "a file path (str or os.PathLike)"),
    (BytesPath(), None, TypeError, "a file path (str or os.PathLike of str)"),
    ("", None, ValueError, "a non-empty file path"),
    ("{tmp}", None, ValueError, "a file path, not a directory"),
    ("{tmp}/", None, ValueError, "a file path, not a directory"),
    ("{tmp}/missing/r.json", None, ValueError, "a path in an existing directory"),
    ("{tmp}/r.txt", ".png", ValueError, "a file name ending in .png"),
    ("{tmp}/r.png.txt", ".png", ValueError, "a file name ending in .png"),
])
def test_bad_output_path_names_the_argument(tmp_path, path, suffix, error, allowed):
    if isinstance(path, str):
        path = path.format(tmp=tmp_path)
    with pytest.raises(error) as exc:
        check_output_path("--out", path, suffix)
    assert str(exc.value).startswith("--out=") and f"expected {allowed}" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directory_is_rejected(tmp_path, monkeypatch):
    """A read-only directory; as root (who may write anyway) os.access is made to say no."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:
        monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    try:
        with pytest.raises(ValueError, match="--out=.*a path in a writable directory"):
            check_output_path("--out", locked / "r.json")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("path, suffix", [("r.json", None), ("r.png", ".png"),
                                          ("R.PNG", ".png"), ("existing.json", None)])
def test_good_output_path_is_returned_as_str(tmp_path, path, suffix):
    """Negative control: writable paths pass (an existing file is fine: it is replaced)."""
    (tmp_path / "existing.json").write_text("old")
    for given in (str(tmp_path / path), tmp_path / path):
        assert check_output_path("--out", given, suffix) == str(tmp_path / path)
    relative = os.path.relpath(tmp_path / path)
    assert check_output_path("--out", relative, suffix) == relative


# ---------------------------------------------------------------- write_atomic

def test_writes_what_write_writes(tmp_path):
    path = tmp_path / "out.bin"
    write_atomic(path, lambda f: (f.write(b"first "), f.write(b"second")))
    assert path.read_bytes() == b"first second"
    assert os.listdir(tmp_path) == ["out.bin"]


def half_then(error):
    def write(f):
        f.write(b"half of the new file")
        raise error
    return write


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), ValueError("bad"),
                                   KeyboardInterrupt()])
def test_failure_mid_write_leaves_no_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "out.bin"
    with pytest.raises(type(error)):
        write_atomic(path, half_then(error))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fails_in", ["write", "fsync", "replace"])
def test_existing_file_is_left_intact_when_the_write_fails(tmp_path, monkeypatch, fails_in):
    path = tmp_path / "out.bin"
    path.write_bytes(b"the old file")

    def broken(*args):
        raise OSError(5, "I/O error")

    def whole(f):
        f.write(b"the new file, longer than the old one")

    if fails_in == "write":
        write = half_then(OSError(5, "I/O error"))
    else:
        monkeypatch.setattr(files.os, fails_in, broken)
        write = whole
    with pytest.raises(OSError, match="I/O error"):
        write_atomic(path, write)
    monkeypatch.undo()
    assert path.read_bytes() == b"the old file"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"a long old file " * 100)
    write_atomic(path, lambda f: f.write(b"short"))
    assert path.read_bytes() == b"short"                    # nothing of the old file is left
    assert os.listdir(tmp_path) == ["out.bin"]


def test_negative_control_a_plain_write_in_place_leaves_half_a_file(tmp_path):
    """What the tests above rule out, done the plain way: the old file is gone and half
    of the new one is there."""
    path = tmp_path / "out.bin"
    path.write_bytes(b"the old file")
    with pytest.raises(OSError), open(path, "wb") as f:
        half_then(OSError(28, "No space left on device"))(f)
    assert path.read_bytes() == b"half of the new file"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_has_the_permissions_the_umask_gives(tmp_path, monkeypatch, umask, mode):
    """0o666 less the umask, as open() would give; the umask is applied by the
    kernel, never read or changed by write_atomic (os.umask is made to fail)."""
    old = os.umask(umask)
    try:
        def no_umask(*args):
            raise AssertionError("write_atomic must not touch the umask")

        monkeypatch.setattr(files.os, "umask", no_umask)
        write_atomic(tmp_path / "out.bin", lambda f: f.write(b"x"))
        monkeypatch.undo()
        assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == mode
        with open(tmp_path / "plain.bin", "wb"):                 # what open() gives
            pass
        assert stat.S_IMODE(os.stat(tmp_path / "plain.bin").st_mode) == mode
    finally:
        os.umask(old)
    assert os.umask(old) == old                                  # the umask is unchanged
