"""Replicas as ``torch.distributed`` processes: the torch backend's data-parallel runs.

Each replica is a process in a gloo process group running the same training
code on its shard of every batch (``nnparity.shared.core.replicas``). The
gradients are summed with one ``all_reduce`` per step; synchronised BatchNorm
sums its statistics with ``AllReduceSum``, an ``all_reduce`` autograd can
differentiate (its backward is the same sum of the gradients).

``run_replicas`` starts the processes itself (``replica_main``, one process per
replica, rendezvous through a file in a private directory), or, when this
process is already one of a ``torchrun`` job (``WORLD_SIZE`` and ``RANK`` set),
runs as that replica: the same code then spans several machines.

Faults end the run: a replica that raises writes its exception for the caller
and exits; the caller, polling every process, kills the others at the first
failure and raises the root cause (``_reported``): a ``ReplicaError`` for a
replica that died without reporting (killed), else the replica's own exception
(``DivergenceError`` included). Every replica also stops itself when its caller
dies (a watchdog on the parent's pid), and collectives time out after
``TIMEOUT_SECONDS``. Only replica 0 writes the result, and only when it
finished.
"""
from __future__ import annotations

import atexit
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from nnparity.backends.processes import (ReplicaError, last_words, picklable, read_pickle,
                                         watch_parent, write_pickle)
from nnparity.shared.core.replicas import Replica, Replicas, running_as
from nnparity.shared.core.validation import fail

T = TypeVar("T")

#: how long a collective waits for a missing replica before giving up
TIMEOUT_SECONDS = 120
#: what a replica process runs (``-c``, not ``-m``: the package already imports this
#: module, and runpy would run a second copy of it)
ENTRY = ("import sys; from nnparity.backends.torch.replicas import replica_main; "
         "replica_main(sys.argv[1], int(sys.argv[2]))")


class AllReduceSum(torch.autograd.Function):
    """The sum over replicas of a tensor, differentiable: if every replica's loss
    depends on S = sum_r v_r, the gradient of the global loss (the sum of theirs)
    with respect to v_r is the sum over replicas of dL_s/dS."""

    @staticmethod
    def forward(ctx, value):
        total = value.detach().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.detach().clone()
        dist.all_reduce(total)
        return total


class TorchReplica:
    """This process's replica (satisfies ``shared.core.replicas.Replica``)."""

    def __init__(self, rank: int, size: int, sync_batch_norm: bool) -> None:
        self.rank, self.size, self.sync_batch_norm = rank, size, sync_batch_norm

    def all_reduce(self, value):
        """The sum over replicas: differentiable for a tensor, exact for an int."""
        if isinstance(value, int):
            total = torch.tensor(value, dtype=torch.int64)
            dist.all_reduce(total)
            return int(total)
        return AllReduceSum.apply(value)


def in_torchrun() -> bool:
    """True when this process was started by ``torchrun`` (or another launcher
    that sets ``RANK`` and ``WORLD_SIZE``) or already belongs to a process group."""
    return dist.is_initialized() or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def run_replicas(replicas: Replicas, job: Callable[[Replica], T]) -> T:
    """``job(replica)`` on every replica; replica 0's result (every replica's,
    under torchrun)."""
    if in_torchrun():
        return _as_torchrun_replica(replicas, job)
    return _spawned(replicas, job)


def _as_torchrun_replica(replicas: Replicas, job):
    """Run ``job`` as this process's rank of the torchrun job. A process group made
    here serves every later call too and is destroyed at exit (gloo aborts the
    process at exit otherwise; destroyed after each call, the next call's
    rendezvous on torchrun's store fails); one the caller made is left to it."""
    if dist.is_initialized():
        size = dist.get_world_size()
    else:
        size = _world_size_from_environment()
    if size != replicas.count:
        fail("replicas", replicas.count, f"WORLD_SIZE={size}, the processes of this torchrun "
             "job (each is one replica)")
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=TIMEOUT_SECONDS))
        atexit.register(_destroy_process_group)
    replica = TorchReplica(dist.get_rank(), size, replicas.sync_batch_norm)
    with running_as(replica):
        return job(replica)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _world_size_from_environment() -> int:
    """WORLD_SIZE as torchrun sets it, checked with the rest of what
    ``init_process_group`` will read, before any rendezvous."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        fail("environment", f"RANK and WORLD_SIZE set, {' and '.join(missing)} not",
             "a torchrun job (it sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT), or "
             "none of them, to let nnparity launch the replicas itself")
    try:
        return int(os.environ["WORLD_SIZE"])
    except ValueError:
        fail("WORLD_SIZE", os.environ["WORLD_SIZE"], "an integer, as torchrun sets it")


def _spawned(replicas: Replicas, job):
    """Start one process per replica (``python -c ENTRY``, so the caller's
    ``__main__`` is never re-imported), wait for all, and stop
    them all at the first that fails."""
    threads = max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // replicas.count))
    with tempfile.TemporaryDirectory(prefix="nnparity-replicas-") as workdir:
        write_pickle(Path(workdir) / "job.pkl", (replicas, job, os.getpid(), threads))
        processes = []
        try:
            for rank in range(replicas.count):
                with open(Path(workdir) / f"stderr-{rank}.txt", "wb") as stderr:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-c", ENTRY, workdir, str(rank)],
                        stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr))
            failed = None
            running = list(processes)
            while running and failed is None:
                time.sleep(0.05)
                for process in [p for p in running if p.poll() is not None]:
                    running.remove(process)
                    if process.returncode != 0 and failed is None:
                        failed = processes.index(process)
            if failed is not None:
                ended = {rank: p.returncode for rank, p in enumerate(processes)
                         if p.poll() is not None}
                raise _reported(workdir, replicas.count, failed, ended)
        finally:
            for process in processes:                 # nothing outlives the call
                if process.poll() is None:
                    process.kill()
                process.wait()
        return read_pickle(Path(workdir) / "result.pkl")


def _reported(workdir: str, count: int, failed: int, ended: dict[int, int]) -> BaseException:
    """Why the run failed, root cause first:

    1. a replica that ended without reporting an exception (killed, crashed): a
       ``ReplicaError`` naming it (the others then fail in a collective, with
       whatever error gloo raises; those are consequences);
    2. else the earliest exception a replica raised by itself (``DivergenceError``,
       a ValueError...), preferring one that is not torch.distributed's own;
    3. else a ``ReplicaError`` naming the first replica that failed."""
    raised = []
    for rank in range(count):
        path = Path(workdir) / f"error-{rank}.pkl"
        if path.exists():
            when, from_collective, exc = read_pickle(path)
            raised.append((from_collective, when, rank, exc))
    reported = {rank for _, _, rank, _ in raised}
    silent = [rank for rank, code in sorted(ended.items()) if code != 0 and rank not in reported]
    if not silent and raised:
        return sorted(raised, key=lambda r: (r[0], r[1], r[2]))[0][3]
    rank = silent[0] if silent else failed
    code = ended.get(rank, 0)
    how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code}")
    last = last_words(Path(workdir) / f"stderr-{rank}.txt")
    return ReplicaError(f"torch replica {rank} of {count} {how} before finishing{last}; the "
                        "run was stopped, its other replicas ended, and nothing was returned")


def from_a_collective(exc: BaseException) -> bool:
    """True for an error raised inside torch.distributed (a peer that vanished or
    stopped answering): gloo raises a plain RuntimeError there, not a DistError."""
    if isinstance(exc, dist.DistError):
        return True
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_globals.get("__name__", "").startswith("torch.distributed"):
            return True
        trace = trace.tb_next
    return False


def lost_the_others(rank: int, count: int, exc: BaseException) -> ReplicaError:
    """What a replica whose collective failed reports (gloo's own message is about
    sockets: "Connection reset by peer", "Timed out waiting 120000ms for recv")."""
    said = str(exc).strip().splitlines()
    return ReplicaError(f"torch replica {rank} of {count} lost the others in a collective "
                        f"({said[0] if said else type(exc).__name__}): another replica stopped "
                        "or stopped answering; the run was stopped and nothing was returned")


def replica_main(workdir: str, rank: int) -> None:
    """The body of one replica process started by ``_spawned`` (``ENTRY``)."""
    replicas, job, parent, threads = read_pickle(Path(workdir) / "job.pkl")
    watch_parent(parent, Path(workdir))
    torch.set_num_threads(threads)
    try:
        dist.init_process_group("gloo", init_method=f"file://{workdir}/rendezvous",
                                rank=rank, world_size=replicas.count,
                                timeout=datetime.timedelta(seconds=TIMEOUT_SECONDS))
        replica = TorchReplica(rank, replicas.count, replicas.sync_batch_norm)
        with running_as(replica):
            result = job(replica)
        if rank == 0:
            write_pickle(Path(workdir) / "result.pkl", result)
    except BaseException as exc:
        collective = from_a_collective(exc)           # another replica vanished
        reported = lost_the_others(rank, replicas.count, exc) if collective else picklable(exc)
        write_pickle(Path(workdir) / f"error-{rank}.pkl", (time.time(), collective, reported))
        raise SystemExit(1) from None                 # the caller reports it, once
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


