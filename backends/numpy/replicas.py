"""Replicas as threads: the NumPy backend's data-parallel runs.

Each replica is a thread running the same training code on its shard of every
batch (``nnparity.shared.core.replicas``). They meet only in ``all_reduce``:
every replica puts its array in its slot, waits for the others, and sums the
slots in rank order, so all replicas get the same bits whatever order the
threads arrive in. That fixed order is the reference's reduction.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from nnparity.shared.core.replicas import Replicas, running_as

T = TypeVar("T")


class ThreadGroup:
    """``size`` replicas sharing slots and a barrier."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: list[Any] = [None] * size
        self.barrier = threading.Barrier(size)

    def all_reduce(self, rank: int, value):
        self.slots[rank] = value
        self.barrier.wait()                          # every replica has written its slot
        total = self.slots[0]
        for other in self.slots[1:]:                 # rank order: the same sum everywhere
            total = total + other
        self.barrier.wait()                          # every replica has read: slots reusable
        return total


class ThreadReplica:
    """Replica ``rank`` of a ``ThreadGroup`` (satisfies ``shared.core.replicas.Replica``)."""

    def __init__(self, group: ThreadGroup, rank: int, sync_batch_norm: bool) -> None:
        self.group, self.rank, self.size = group, rank, group.size
        self.sync_batch_norm = sync_batch_norm

    def all_reduce(self, value):
        return self.group.all_reduce(self.rank, value)


def run_replicas(replicas: Replicas, work: Callable[[ThreadReplica], T]) -> T:
    """Run ``work(replica)`` on ``replicas.count`` threads; replica 0's result.

    A replica that raises breaks the barrier, so the others stop at their next
    ``all_reduce`` instead of waiting for it; the exception of the lowest rank
    that raised one of its own (not the broken barrier) is re-raised here. An
    interrupt of the caller (Ctrl-C) breaks the barrier too, and is re-raised once
    every replica has stopped."""
    group = ThreadGroup(replicas.count)
    results: list = [None] * replicas.count
    errors: list[BaseException | None] = [None] * replicas.count

    def run(rank: int) -> None:
        try:
            replica = ThreadReplica(group, rank, replicas.sync_batch_norm)
            with running_as(replica):                # BatchNorm finds it there
                results[rank] = work(replica)
        except threading.BrokenBarrierError as exc:  # another replica failed first
            errors[rank] = exc
        except BaseException as exc:                 # noqa: BLE001 - re-raised below
            errors[rank] = exc
            group.barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,), name=f"nnparity-replica-{rank}")
               for rank in range(replicas.count)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:                            # KeyboardInterrupt: stop them all
        group.barrier.abort()
        for thread in threads:
            thread.join()
        raise
    first = next((e for e in errors if e is not None
                  and not isinstance(e, threading.BrokenBarrierError)), None)
    if first is None:
        first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results[0]
