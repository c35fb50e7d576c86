"""Faults in data-parallel runs (issue 16): a killed replica ends the whole run.

A long torch run on 2 replicas loses replica 1 to SIGKILL mid-run: the caller
gets a ``ReplicaError`` naming replica 1 and the signal within a bounded time,
and no replica process (nor its private directory) outlives the call. The same
for the JAX process that runs the replicas as host devices. A replica that
raises by itself (DivergenceError) is covered in test_replicas.py.

The processes are found in /proc (``conftest.replica_processes``, the same
function the session's no-leftover check uses); a negative control shows that
it finds a process that looks like a replica, a grandchild included.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from conftest import REPLICA_MODULES, replica_processes, require
from replica_cases import mlp_case

from nnparity.backends import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see conftest

#: how long the caller may take to report a killed replica
REPORT_SECONDS = 30
#: how long to wait for the replica processes to appear
START_SECONDS = 60


class Background:
    """``train(...)`` in a thread of this process; ``error`` and ``result`` when done."""

    def __init__(self, *args, **kwargs) -> None:
        self.error: BaseException | None = None
        self.result = None
        self.thread = threading.Thread(target=self._run, args=args, kwargs=kwargs,
                                       name="replica-fault-test", daemon=True)
        self.thread.start()

    def _run(self, *args, **kwargs) -> None:
        try:
            self.result = train(*args, **kwargs)
        except BaseException as exc:                 # noqa: BLE001 - examined by the test
            self.error = exc


def wait_for_replicas(module: str, count: int, still_running: Background) -> dict[int, list]:
    """pid -> argv of the ``count`` processes of ``module`` this process started,
    once they all exist."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert still_running.thread.is_alive(), f"the run ended early: {still_running.error!r}"
        found = {pid: command.split() for pid, command in replica_processes().items()
                 if module in command}
        if len(found) == count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} processes of {module} did not start in {START_SECONDS} s")


def is_alive(pid: int, module: str) -> bool:
    """True while ``pid`` is a live (not zombie) process running ``module``."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return module.encode() in command


def kill_and_wait(background: Background, pid: int) -> float:
    """SIGKILL ``pid``; the seconds until ``background``'s call returned."""
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    background.thread.join(REPORT_SECONDS + 5)
    return time.monotonic() - killed


TORCH_LAUNCHER = "nnparity.backends.torch.replicas"
#: the caller's poll of its replicas, slowed (the launcher's own is 0.05 s)
SLOW_POLL = 0.5


def slow_poll(monkeypatch) -> None:
    """The torch launcher polls its replicas every SLOW_POLL s instead of 0.05 s, so
    the surviving replica (which sees the kill within milliseconds) has always
    reported its own error before the caller looks: what the caller answers must
    not depend on that race."""
    launcher = importlib.import_module(TORCH_LAUNCHER)
    monkeypatch.setattr(launcher, "time", types.SimpleNamespace(
        sleep=lambda seconds: time.sleep(max(seconds, SLOW_POLL)), time=time.time,
        monotonic=time.monotonic))


def wait_until_joined(workdir: Path) -> None:
    """Until the replicas' rendezvous file exists (they joined the group), then 1 s
    more: the replicas are training."""
    deadline = time.monotonic() + START_SECONDS
    while not (workdir / "rendezvous").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)


def killed_torch_run() -> tuple[Background, dict[int, list], Path, float]:
    """A long torch run on 2 replicas (10000 steps, about 30 s) whose replica 1 is
    killed mid-run: (the call, its replicas' pid -> argv, their private directory,
    the seconds from the kill to the call's end)."""
    spec, data = mlp_case(epochs=2000)
    background = Background(spec, data, "torch", replicas=2, metrics=False)
    found = wait_for_replicas(TORCH_LAUNCHER, 2, background)
    ranks = {int(argv[-1]): pid for pid, argv in found.items()}     # ... -c ENTRY WORKDIR RANK
    workdir = Path(next(iter(found.values()))[-2])
    wait_until_joined(workdir)
    assert background.thread.is_alive(), f"the run ended early: {background.error!r}"
    took = kill_and_wait(background, ranks[1])
    assert not background.thread.is_alive(), f"no answer {REPORT_SECONDS + 5} s after the kill"
    return background, found, workdir, took


@pytest.mark.slow
def test_a_killed_torch_replica_ends_the_run_leaving_nothing_behind():
    require("torch")
    background, found, workdir, took = killed_torch_run()
    assert took < REPORT_SECONDS, took
    assert background.result is None and isinstance(background.error, Exception)
    assert not any(is_alive(pid, TORCH_LAUNCHER) for pid in found), "a replica outlived the run"
    assert replica_processes() == {}
    assert not workdir.exists(), f"{workdir} was left behind"


@pytest.mark.slow
def test_a_killed_torch_replica_is_reported_as_replica_error(monkeypatch):
    require("torch")
    from nnparity.backends.torch.replicas import ReplicaError

    slow_poll(monkeypatch)
    background, _, _, took = killed_torch_run()
    assert took < REPORT_SECONDS + SLOW_POLL, took
    assert type(background.error) is ReplicaError, repr(background.error)
    message = str(background.error)
    assert "replica 1 of 2" in message and "SIGKILL" in message, message


def cli_train_killed(tmp_path: Path, python_args: list[str]
                     ) -> tuple[subprocess.CompletedProcess, float]:
    """``python PYTHON_ARGS train --backend torch --replicas 2 --save PATH`` on a long
    notebook run whose replica 1 is killed mid-run: (how it ended, with its output
    as text; seconds from the kill to its exit)."""
    command = [sys.executable, *python_args, "train", "--backend", "torch", "--replicas", "2",
               "--epochs", "100000", "--save", str(tmp_path / "model.npz")]
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        found: dict[int, list] = {}
        deadline = time.monotonic() + START_SECONDS
        while len(found) < 2 and time.monotonic() < deadline:
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.05)
            found = {pid: command.split() for pid, command in replica_processes().items()
                     if TORCH_LAUNCHER in command}
        assert len(found) == 2, f"the CLI's replicas did not start in {START_SECONDS} s"
        wait_until_joined(Path(next(iter(found.values()))[-2]))
        assert cli.poll() is None, cli.communicate()
        (rank_1,) = [pid for pid, argv in found.items() if argv[-1] == "1"]
        os.kill(rank_1, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = cli.communicate(timeout=REPORT_SECONDS + 5)
        took = time.monotonic() - killed
        return subprocess.CompletedProcess(command, cli.returncode, stdout.decode(),
                                           stderr.decode()), took
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


@pytest.mark.slow
def test_the_cli_fails_on_a_killed_torch_replica_and_saves_nothing(tmp_path):
    require("torch")
    cli, took = cli_train_killed(tmp_path, ["-m", "nnparity.shared.cli.main"])
    assert took < REPORT_SECONDS, took
    assert cli.returncode != 0, cli
    assert not (tmp_path / "model.npz").exists(), "a checkpoint was written"
    assert list(tmp_path.iterdir()) == []
    assert replica_processes() == {}


#: the CLI with the torch launcher's poll slowed (see ``slow_poll``); the module is
#: named in pieces, so that this process's command line does not look like a replica's
SLOW_POLL_CLI = f"""
import importlib, sys, time, types
launcher = importlib.import_module(".".join(["nnparity", "backends", "torch", "replicas"]))
launcher.time = types.SimpleNamespace(sleep=lambda seconds: time.sleep(max(seconds, {SLOW_POLL})),
                                      time=time.time, monotonic=time.monotonic)
from nnparity.shared.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_cli_reports_a_killed_torch_replica_in_one_line(tmp_path):
    require("torch")
    cli, _ = cli_train_killed(tmp_path, ["-c", SLOW_POLL_CLI])
    assert not (tmp_path / "model.npz").exists()
    assert cli.returncode == 2, (cli.returncode, cli.stderr)
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnparity: error: torch replica 1 of 2 was "
                                                   "killed by signal SIGKILL"), cli.stderr


@pytest.mark.slow
def test_a_killed_jax_replica_process_ends_the_run_with_replica_error():
    require("jax")
    from nnparity.backends.jax.replicas import ReplicaError

    module = "nnparity.backends.jax.replicas"
    spec, data = mlp_case(epochs=40000)             # about 35 s on 2 host devices
    background = Background(spec, data, "jax", replicas=2, metrics=False)
    found = wait_for_replicas(module, 1, background)
    (pid,) = found
    workdir = Path(found[pid][-1])                  # ... -c ENTRY WORKDIR
    time.sleep(4.0)                                  # JAX imported, the run compiled
    assert background.thread.is_alive(), f"the run ended early: {background.error!r}"
    took = kill_and_wait(background, pid)
    assert not background.thread.is_alive(), f"no answer {REPORT_SECONDS + 5} s after the kill"
    assert took < REPORT_SECONDS, took
    assert background.result is None
    assert type(background.error) is ReplicaError, repr(background.error)
    assert "SIGKILL" in str(background.error), str(background.error)
    assert not is_alive(pid, module)
    assert replica_processes() == {}
    assert not workdir.exists(), f"{workdir} was left behind"


@pytest.mark.slow
@pytest.mark.parametrize("backend, count", [("torch", 2), ("jax", 1)])
def test_replicas_end_by_themselves_when_their_caller_is_killed(backend, count):
    """The caller (the CLI) dies by SIGKILL mid-run, so nothing stops its replicas
    but their watchdog on the parent's pid: they must end within seconds.
    (The caller's private directory stays behind: only the caller removes it.)"""
    require(backend)
    module = f"nnparity.backends.{backend}.replicas"
    cli = subprocess.Popen([sys.executable, "-m", "nnparity.shared.cli.main", "train",
                            "--backend", backend, "--replicas", "2", "--epochs", "100000"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    found: dict[int, str] = {}
    try:
        deadline = time.monotonic() + START_SECONDS
        while len(found) < count and time.monotonic() < deadline:
            assert cli.poll() is None, cli.returncode
            time.sleep(0.05)
            found = {pid: command for pid, command in replica_processes().items()
                     if module in command}
        assert len(found) == count, f"the CLI's replicas did not start in {START_SECONDS} s"
        time.sleep(3.0)                              # training
    finally:
        cli.kill()
        cli.wait()
    killed = time.monotonic()
    while any(is_alive(pid, module) for pid in found) and time.monotonic() - killed < 20:
        time.sleep(0.05)
    assert not any(is_alive(pid, module) for pid in found), "a replica outlived its caller"
    for command in found.values():      # the private directory: its replicas removed it
        (workdir,) = [Path(word) for word in command.split()
                      if Path(word).name.startswith("nnparity-")]
        assert not workdir.exists(), f"{workdir} (with the job's data) was left behind"


def test_the_torch_and_jax_replica_errors_are_one_class():
    """What the callers catch: the torch and JAX modules name the same class."""
    require("torch")
    require("jax")
    from nnparity.backends.jax.replicas import ReplicaError as JaxReplicaError
    from nnparity.backends.torch.replicas import ReplicaError as TorchReplicaError

    assert TorchReplicaError is JaxReplicaError and issubclass(TorchReplicaError, RuntimeError)


def test_negative_control_the_leftover_check_finds_lookalikes():
    """``replica_processes`` (the session's no-leftover check) finds a child and a
    grandchild whose command lines name a replica module, and forgets them once
    they are gone."""
    torch_module, jax_module = REPLICA_MODULES
    sleeper = "import time; time.sleep(60)"
    # the parent's own command line must not name the module: it is built at run time
    spawner = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
               f"{sleeper!r}, '.'.join(['nnparity', 'backends', 'jax', 'replicas'])])")
    child = subprocess.Popen([sys.executable, "-c", sleeper, torch_module])
    parent = subprocess.Popen([sys.executable, "-c", spawner])
    found: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 20
        while len(found) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            found = replica_processes()
        assert child.pid in found and torch_module in found[child.pid], found
        (grandchild,) = [pid for pid in found if pid != child.pid]
        assert jax_module in found[grandchild] and parent.pid not in found
        assert replica_processes(ancestor=parent.pid) == {grandchild: found[grandchild]}
    finally:
        for pid in found:                            # the grandchild first, while it has
            if pid != child.pid:                     # its parent (never reused meanwhile)
                os.kill(pid, signal.SIGKILL)
        for process in (child, parent):
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while replica_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replica_processes() == {}


#: a NumPy data-parallel run far too long to finish, interrupted (SIGINT) after 2 s
INTERRUPTED_NUMPY_RUN = """
import os, signal, threading, time
from nnparity.backends import train
from nnparity.shared.core.synthetic import uneven_shards_case

spec, data = uneven_shards_case(epochs=100_000)
threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    train(spec, data, "numpy", replicas=2)
except KeyboardInterrupt:
    replicas = [t for t in threading.enumerate() if t.name.startswith("nnparity-replica")]
    print(f"interrupted {time.monotonic() - start:.1f} {len(replicas)}")
"""


def test_ctrl_c_stops_a_numpy_data_parallel_run():
    """The replica threads stop at their next all_reduce, and the interrupt reaches the
    caller (it used to wait for the whole run: the threads were left running)."""
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_NUMPY_RUN], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    word, seconds, alive = done.stdout.split()
    assert word == "interrupted" and float(seconds) < 10 and alive == "0", done.stdout
