"""Check the multi-host recipes of docs/data-parallel.md on one machine.

    python tools/multi_host.py torch        # two torchrun nodes on 127.0.0.1
    python tools/multi_host.py torch --network-namespaces   # two hosts, two addresses
    python tools/multi_host.py jax          # two JAX processes, jax.distributed

Each trains the digits CNN (``digits_cnn_spec``, one epoch, float64) on 2
replicas the multi-host way and checks the result against the same backend's
single-device run under the float64 policy; it prints the largest relative
difference and exits 0 when the check passes.

- torch: two ``torchrun`` invocations, ``--nnodes 2 --node-rank r
  --nproc-per-node 1`` with a static rendezvous, each running ``nnparity train
  --backend torch --replicas 2 --save``; rank 0 writes the checkpoint.
  ``--network-namespaces`` (root and iproute2) runs each node in its own Linux
  network namespace with its own address, joined by a virtual Ethernet pair, so
  that gloo talks across a network, not through loopback.
- jax: two Python processes that call ``jax.distributed.initialize`` (gloo CPU
  collectives) with one CPU device each, then ``train(..., replicas=2)``; both
  must return the single-device result.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

EPOCHS = 1
NAMESPACES = ("nnparity_host_a", "nnparity_host_b")
ADDRESSES = ("10.77.0.1", "10.77.0.2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def case():
    from nnparity.shared.core.datasets import load_dataset
    from nnparity.shared.core.recipes import digits_cnn_spec

    return digits_cnn_spec().replace(epochs=EPOCHS), load_dataset("digits_images")


def named(params, model_state) -> dict[str, np.ndarray]:
    """Parameters and buffers by flat name ("0.weight", "model 4.running_mean")."""
    from nnparity.shared.core.tree import to_flat

    return {**to_flat(params), **{f"model {k}": v for k, v in to_flat(model_state).items()}}


def check(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    """Assert ``actual`` equals ``expected`` under the float64 policy; the largest
    normwise relative difference."""
    from nnparity.shared.testing import assert_close

    assert_close(actual, expected)
    return max(float(np.abs(actual[k] - e).max() / max(np.abs(e).max(), np.finfo(float).tiny))
               for k, e in expected.items())


def single_device(backend: str) -> dict[str, np.ndarray]:
    from nnparity.backends import train

    spec, data = case()
    result = train(spec, data, backend=backend)
    return named(result.params, result.model_state)


def run_together(commands: list[tuple[list[str], dict[str, str]]], timeout: float) -> None:
    """Run the (command, environment) pairs at once; raise SystemExit with the output
    of the first that fails. None outlives the call."""
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
                 for command, env in commands]
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise SystemExit(f"{process.args[0]} failed ({process.returncode}):\n{output}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def run_torch(namespaces: bool, timeout: float) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        save = Path(workdir) / "two_nodes.npz"
        if namespaces:
            make_namespaces()
        try:
            commands = []
            for rank in (0, 1):
                command = ["torchrun", "--nnodes", "2", "--node-rank", str(rank),
                           "--nproc-per-node", "1",
                           "--master-addr", ADDRESSES[0] if namespaces else "127.0.0.1",
                           "--master-port", str(port), "-m", "nnparity.shared.cli.main",
                           "train", "--backend", "torch", "--replicas", "2",
                           "--recipe", "digits_cnn", "--epochs", str(EPOCHS),
                           "--save", str(save)]
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                if namespaces:
                    env["GLOO_SOCKET_IFNAME"] = f"nnp{rank}"
                    command = ["ip", "netns", "exec", NAMESPACES[rank]] + command
                commands.append((command, env))
            run_together(commands, timeout)
        finally:
            if namespaces:
                remove_namespaces()
        from nnparity.shared.io.checkpoint import load_checkpoint

        saved = load_checkpoint(save)
        two = named(saved.params, saved.model_state)
    return check(two, single_device("torch"))


def make_namespaces() -> None:
    remove_namespaces()
    run = [["ip", "netns", "add", NAMESPACES[0]], ["ip", "netns", "add", NAMESPACES[1]],
           ["ip", "link", "add", "nnp0", "type", "veth", "peer", "name", "nnp1"]]
    for rank in (0, 1):
        ns = NAMESPACES[rank]
        run += [["ip", "link", "set", f"nnp{rank}", "netns", ns],
                ["ip", "-n", ns, "addr", "add", f"{ADDRESSES[rank]}/24", "dev", f"nnp{rank}"],
                ["ip", "-n", ns, "link", "set", f"nnp{rank}", "up"],
                ["ip", "-n", ns, "link", "set", "lo", "up"]]
    for command in run:
        subprocess.run(command, check=True)


def remove_namespaces() -> None:
    for ns in NAMESPACES:                    # deleting a namespace deletes its veth end
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, check=False)


def jax_worker(process_id: int, port: int, out: str) -> None:
    """One process of the JAX check (run by ``run_jax``)."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id)
    from nnparity.backends import train

    spec, data = case()
    result = train(spec, data, backend="jax", replicas=jax.device_count())
    np.savez(out, **named(result.params, result.model_state))


def run_jax(timeout: float) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        outs = [str(Path(workdir) / f"process{i}.npz") for i in (0, 1)]
        run_together([([sys.executable, __file__, "jax-worker", str(i), str(port), outs[i]],
                       dict(os.environ)) for i in (0, 1)], timeout)
        results = []
        for out in outs:
            with np.load(out) as saved:
                results.append({k: saved[k] for k in saved.files})
    one = single_device("jax")
    return max(check(result, one) for result in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=("torch", "jax", "jax-worker"))
    parser.add_argument("worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--network-namespaces", action="store_true",
                        help="torch: run the two nodes in two network namespaces (root)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.backend == "jax-worker":
        jax_worker(int(args.worker[0]), int(args.worker[1]), args.worker[2])
        return 0
    worst = (run_torch(args.network_namespaces, args.timeout) if args.backend == "torch"
             else run_jax(args.timeout))
    print(f"{args.backend}: two {'hosts' if args.network_namespaces else 'processes'} equal "
          f"one device under the float64 policy; largest relative difference {worst:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
