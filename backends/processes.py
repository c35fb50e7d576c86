"""What the torch and JAX backends' replica processes share with their caller:
files written whole or not at all, a watchdog on the caller, and a dead
process's last words."""
from __future__ import annotations

import os
import pickle
import shutil
import threading
import time
from pathlib import Path
from typing import Any


#: XLA's flag for N CPU devices, read when JAX starts (the JAX replicas' fresh
#: process sets it; ``nnparity bench`` drops it from its timing processes)
DEVICE_FLAG = "--xla_force_host_platform_device_count"


class ReplicaError(RuntimeError):
    """A replica of a data-parallel run ended without finishing (killed, or crashed
    without an exception it could report); the run was stopped."""


def write_pickle(path: Path, value: object) -> None:
    """Pickle ``value`` to ``path`` atomically: a reader sees the whole file or none.
    (Only between nnparity's own processes, in a private temporary directory.)"""
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as file:
        pickle.dump(value, file)
    os.replace(partial, path)


def read_pickle(path: Path) -> Any:
    with open(path, "rb") as file:
        return pickle.load(file)


def picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a ``ReplicaError`` that says what it was."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:                                # noqa: BLE001 - any unpicklable error
        return ReplicaError(f"{type(exc).__name__}: {exc}")


def watch_parent(parent: int, workdir: Path) -> None:
    """End this process (in a daemon thread) once ``parent``, which started it, is
    gone, removing ``workdir`` (the job, a copy of the training data, is there),
    which the parent would have removed."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="nnparity-parent-watchdog").start()


def last_words(path: Path) -> str:
    """" (its last words: ...)" from a process's captured stderr, or ""."""
    said = path.read_text(errors="replace").strip() if path.exists() else ""
    return f" (its last words: {said.splitlines()[-1]})" if said else ""
