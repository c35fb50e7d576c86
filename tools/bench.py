"""Run the benchmark of issue 6 from the repository: the same as ``nnparity bench``.

A measurement, not a test: timings never decide a pass or fail. It prints the
table (medians, ratios) and, with ``--json PATH``, writes it.

Run: python tools/bench.py [--repeats N] [--json PATH] [--backends B ...]
(about 1-2 minutes on 2 cores with every backend and peer installed)
"""
import sys

from nnparity.shared.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
