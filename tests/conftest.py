"""Shared test helpers.

``require(framework)`` is the one place that decides what happens when a
test needs torch or jax and the framework is not installed:

- normally the test is skipped (``pytest.importorskip``);
- when the environment variable ``CI`` is set to a non-empty value, a missing
  framework is an error: the test fails, so CI cannot pass by skipping.

Use it as a plain function (``from conftest import require``) or through the
``require`` fixture. ``require_program(name)`` does the same for a program
on PATH (the HTML report's browser test needs ``chromium``). Thread counts
are left alone on purpose: no test here depends on them (parity is judged
with the tolerance policy, not bitwise).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import signal
import sys
from types import ModuleType

import pytest

#: framework name -> module that has to import
FRAMEWORKS = {"numpy": "numpy", "torch": "torch", "jax": "jax"}


def ci_strict() -> bool:
    """True when missing frameworks must fail instead of skip (``CI`` is set)."""
    return bool(os.environ.get("CI"))


def require(framework: str) -> ModuleType:
    """Import ``framework`` for a test; skip when it is missing, or fail under CI.
    Keras is imported as ``to_keras`` imports it: on the jax backend unless
    ``KERAS_BACKEND`` says otherwise (its default, tensorflow, is not installed)."""
    module_name = FRAMEWORKS.get(framework, framework)
    if module_name == "keras":
        os.environ.setdefault("KERAS_BACKEND", "jax")
    if ci_strict():
        try:
            return importlib.import_module(module_name)
        except ImportError as exc:
            pytest.fail(f"CI is set, so {module_name!r} must be installed for this test; "
                        f"importing it failed: {exc!r}", pytrace=False)
    return pytest.importorskip(module_name)


def require_program(name: str) -> str:
    """The path of the program ``name`` for a test (e.g. Debian's ``chromium``);
    skip when it is not on PATH, or fail under CI (``.ci/run`` installs it)."""
    path = shutil.which(name)
    if path is None:
        if ci_strict():
            pytest.fail(f"CI is set, so the program {name!r} must be installed for this test; "
                        f"it is not on PATH", pytrace=False)
        pytest.skip(f"the program {name!r} is not installed")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Pin torch to one thread for a module (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``), for speed only; restored after.

    Results do not depend on it (see test_determinism.py), but on this 2-core
    machine torch's default 2-thread pool is 50-300 times slower when another
    process keeps a core busy (160 Adam steps of a 4-32-32-3 network: 12-18 s
    instead of 0.06 s), which would make the run time of these tests erratic.
    """
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def perturb_torch(monkeypatch) -> None:
    """Negative control: the first element of torch's first trained parameter (the
    notebook's 0.weight[0, 0]) moved by 1e-6 (parity must fail)."""
    import nnparity.backends.torch as torch_backend
    real_train = torch_backend.train

    def perturbed(*args):
        result = real_train(*args)
        first = next(value for layer in result.params for value in layer.values())
        first.flat[0] += 1e-6
        return result

    monkeypatch.setattr(torch_backend, "train", perturbed)


@contextlib.contextmanager
def deadline(seconds: float, what: str = "the code under test"):
    """Raise TimeoutError in the main thread when the body takes longer than
    ``seconds`` (a blocking open() of a FIFO is interrupted too: the handler's
    exception ends the system call's retry)."""
    def expired(signum, frame):
        raise TimeoutError(f"{what} still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(name="require")
def require_fixture():
    """The ``require`` function as a fixture."""
    return require


# With --import-mode=importlib this file is not importable as ``conftest`` by
# default; register it so test modules can write ``from conftest import require``.
_THIS = sys.modules[__name__]
sys.modules.setdefault("conftest", _THIS)


def pytest_collect_file(file_path, parent):
    """Register this file as ``conftest`` again before a test module is imported:
    pytest removes ``sys.modules["conftest"]`` whenever it loads another
    conftest.py (tests/upstream has one)."""
    sys.modules.setdefault("conftest", _THIS)


def _register_helper(name: str) -> None:
    """Make tests/{name}.py importable as ``name`` (helpers shared by test modules)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register_helper("crafted_checkpoints")        # checkpoint files crafted to attack the reader
_register_helper("idioms_guide")               # docs/idioms.md's code blocks and test names
_register_helper("layer_contract")             # the tests every layer kind passes
_register_helper("layer_vjp")                  # one layer against its torch.nn oracle
_register_helper("conv_checks")                # one convolution layer alone, in every backend
_register_helper("pooling")                    # one pooling layer alone, in every backend
_register_helper("recurrent_checks")           # what the RNN, LSTM and GRU tests share
_register_helper("seed_notebook")               # the seed notebook's printed results
_register_helper("replica_cases")               # data-parallel cases (issue 16)


def pytest_generate_tests(metafunc):
    """A ``LayerContract`` subclass's tests run once per entry of its ``cases``."""
    if "case" in metafunc.fixturenames and metafunc.cls is not None \
            and hasattr(metafunc.cls, "cases"):
        cases = metafunc.cls.cases
        assert cases, f"{metafunc.cls.__name__}.cases is empty: a layer kind needs cases"
        metafunc.parametrize("case", list(cases.values()), ids=list(cases))


# ---------------------------------------------------------------- hypothesis profiles
#
# "ci" (the default): derandomized, so every run draws the same 50 examples and a
# failure reproduces; no deadline, because the first example of each new network
# structure pays for a JAX compilation. "thorough": 1000 fresh random examples,
# chosen with ``pytest --hypothesis-profile thorough``. "fuzz": the fuzz suites'
# long profile (tests/test_fuzz_*.py), 200000 fresh examples per test, which is
# more than any session runs: bound it by time, e.g.
# ``timeout 1800 python -m pytest tests/test_fuzz_inputs.py --hypothesis-profile fuzz``
# (each fuzz module scales its examples from the profile's max_examples). The
# hypothesis pytest plugin applies --hypothesis-profile after this file is
# imported, so the option overrides the default loaded here.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; tests that need it import it themselves
    pass
else:
    settings.register_profile(
        "ci", derandomize=True, max_examples=50, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile(
        "thorough", max_examples=1000, deadline=None, derandomize=False, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile(
        "fuzz", max_examples=200_000, deadline=None, derandomize=False, print_blob=True,
        suppress_health_check=list(HealthCheck))
    settings.load_profile("ci")


# ---------------------------------------------------------------- no replica left behind
#
# A data-parallel run (issue 16) starts replica processes; none may outlive the
# tests. At the end of the session, any process descending from this one whose
# command line runs a replica module fails the session (an error at the last
# test's teardown), and is then killed.

#: the modules a torch or JAX replica process runs (its ``python -c`` command names them)
REPLICA_MODULES = ("nnparity.backends.torch.replicas", "nnparity.backends.jax.replicas")


def replica_processes(ancestor: int | None = None) -> dict[int, str]:
    """pid -> command line of every live replica process descending from
    ``ancestor`` (default: this process), read from /proc."""
    ancestor = os.getpid() if ancestor is None else ancestor
    parents, commands = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:      # "pid (comm) state ppid ..."
                parents[int(entry)] = int(file.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                commands[int(entry)] = file.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):                # it ended meanwhile
            continue

    def descends(pid: int) -> bool:
        seen = set()
        while pid in parents and pid not in seen:
            seen.add(pid)
            pid = parents[pid]
            if pid == ancestor:
                return True
        return False

    return {pid: command for pid, command in commands.items()
            if any(module in command for module in REPLICA_MODULES) and descends(pid)}


@pytest.fixture(scope="session", autouse=True)
def no_replica_process_left_behind():
    """Fail the session if a replica process started by its tests is still alive."""
    yield
    left = replica_processes()
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail("replica processes left behind by the tests (now killed): "
                    + "; ".join(f"pid {pid}: {command}" for pid, command in left.items()),
                    pytrace=False)
