#!/usr/bin/env bash
# mypy on the installed packages nnparity.shared and nnparity.backends, as CI runs it.
# They live in shared/ and backends/ (setuptools package-dir), so mypy sees them
# through a link tree build/typecheck/nnparity/{shared,backends}. Settings: pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/typecheck/nnparity
ln -sfn ../../../shared build/typecheck/nnparity/shared
ln -sfn ../../../backends build/typecheck/nnparity/backends
MYPYPATH=build/typecheck exec mypy -p nnparity.shared -p nnparity.backends "$@"
