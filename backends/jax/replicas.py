"""Replicas as JAX devices: the JAX backend's data-parallel runs.

The compiled run is the single-device one with every batch placed across a
``Mesh`` of N devices (``NamedSharding(mesh, P("replicas"))``, rows split as
``shard_bounds`` splits them; XLA pads an uneven split itself). The compiler
then partitions the computation: the sums over the batch (the loss's mean,
BatchNorm's statistics, every gradient) become cross-device reductions, so what
is computed is, by construction, the global batch's loss and gradient; only the
order of the sums changes. Where the compiler finds it cheaper it gathers rows
instead of splitting the work (measured: the digits CNN's max-pooling runs on the
whole batch on both devices): the result is the same, the speed is not.
Per-replica BatchNorm is written out instead (``layers/batch_norm.py``).

On CPU, N host devices exist only if ``--xla_force_host_platform_device_count=N``
is in ``XLA_FLAGS`` before JAX starts, so ``run_replicas`` runs the job in a fresh
Python process with that flag (``process_main``); the
caller's process and its JAX configuration are never touched. A caller whose JAX
already has N devices (several hosts after ``jax.distributed.initialize``, or
the flag set by the user) runs the job in its own process. The fresh process
runs on the CPU (``JAX_PLATFORMS=cpu``): the flag makes host devices only.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from nnparity.backends.processes import (DEVICE_FLAG, ReplicaError, last_words, picklable,
                                         read_pickle, watch_parent, write_pickle)
from nnparity.shared.core.replicas import Replicas, running_as

T = TypeVar("T")

#: what the fresh process runs (``-c``, not ``-m``: the package already imports this
#: module, and runpy would run a second copy of it)
ENTRY = ("import sys; from nnparity.backends.jax.replicas import process_main; "
         "process_main(sys.argv[1])")


@dataclass(frozen=True)
class DeviceReplicas:
    """N devices running one sharded computation (the current ``Replica`` of a JAX
    run; hashable, so a compiled function can take it as a static argument)."""

    size: int
    sync_batch_norm: bool
    sharding: Any                # NamedSharding(mesh, P("replicas")) over the batch axis
    rank: None = None            # no per-replica program: the compiler partitions one

    def all_reduce(self, value):
        raise NotImplementedError("a sharded JAX computation reduces by itself")

    def place(self, batch):
        """Constrain a batch's leading (row) axis to be split across the devices."""
        import jax

        return jax.lax.with_sharding_constraint(batch, self.sharding)


def device_replicas(replicas: Replicas) -> DeviceReplicas:
    """The mesh of the first ``replicas.count`` devices of this process's JAX."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:replicas.count]), ("replicas",))
    return DeviceReplicas(replicas.count, replicas.sync_batch_norm,
                          NamedSharding(mesh, PartitionSpec("replicas")))


def has_devices(count: int) -> bool:
    """True when this process's JAX has at least ``count`` devices (False, without
    importing it, when JAX is not imported; asking starts its backend, with the
    flags this process started with)."""
    if "jax" not in sys.modules:
        return False
    import jax

    return jax.device_count() >= count


def run_replicas(replicas: Replicas, job: Callable[[DeviceReplicas], T]) -> T:
    """``job(devices)`` across ``replicas.count`` devices; its result."""
    if has_devices(replicas.count):
        return _run(replicas, job)
    with tempfile.TemporaryDirectory(prefix="nnparity-jax-replicas-") as workdir:
        write_pickle(Path(workdir) / "job.pkl", (replicas, job, os.getpid()))
        flags = os.environ.get("XLA_FLAGS", "").split()
        flags = [f for f in flags if not f.startswith(DEVICE_FLAG)]
        env = {**os.environ, "XLA_FLAGS": " ".join(flags + [f"{DEVICE_FLAG}={replicas.count}"]),
               "JAX_PLATFORMS": "cpu"}
        with open(Path(workdir) / "stderr.txt", "wb") as stderr:
            process = subprocess.Popen([sys.executable, "-c", ENTRY, workdir], env=env,
                                       stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
            try:
                code = process.wait()
            finally:
                if process.poll() is None:                 # interrupted: nothing outlives us
                    process.kill()
                    process.wait()
        if code == 0:
            return read_pickle(Path(workdir) / "result.pkl")
        error = Path(workdir) / "error.pkl"
        if error.exists():
            raise read_pickle(error)                # the job's own exception
        how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        raise ReplicaError(f"the JAX process running {replicas.count} replicas {how} before "
                           f"finishing{last_words(Path(workdir) / 'stderr.txt')}; nothing was "
                           "returned")


def _run(replicas: Replicas, job):
    devices = device_replicas(replicas)
    with running_as(devices):              # type: ignore[arg-type]  # BatchNorm reads it
        return job(devices)


def process_main(workdir: str) -> None:
    """The body of the fresh process ``run_replicas`` starts (``ENTRY``)."""
    replicas, job, parent = read_pickle(Path(workdir) / "job.pkl")
    watch_parent(parent, Path(workdir))
    try:
        result = _run(replicas, job)
    except BaseException as exc:                   # noqa: BLE001 - reported to the caller
        write_pickle(Path(workdir) / "error.pkl", picklable(exc))
        raise SystemExit(1) from None
    write_pickle(Path(workdir) / "result.pkl", result)
