#!/usr/bin/env bash
# The whole test suite: nbdev hygiene, the notebooks' own tests, then tests/.  (`make test` runs this in .venv.)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
t0=$SECONDS
snap() { find "$@" -type f \( -name '*.ipynb' -o -name '*.py' -o -name '*.md' \) -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha1sum; }

echo "== hygiene: notebooks clean (nbdev_clean leaves no diff)"
before=$(snap nbs); nbdev_clean; after=$(snap nbs)
if [ "$before" != "$after" ]; then echo "FAIL: notebooks were not clean; nbdev_clean changed them (commit the cleaned notebooks)"; exit 1; fi

echo "== hygiene: library in sync (nbdev_export leaves no diff)"
before=$(snap llamaduo); nbdev_export; after=$(snap llamaduo)
if [ "$before" != "$after" ]; then echo "FAIL: llamaduo/ was out of sync with nbs/; nbdev_export changed it (commit the export)"; exit 1; fi

echo "== lint: pyflakes on llamaduo/ (no undefined names, no unused imports)"
python -m pyflakes llamaduo

echo "== lint: ruff over nbs/ (lines <= 120, one statement per line: ruff.toml)"
python -m ruff check nbs

echo "== house: no import circle, no private name imported across modules, cell and line figures (tools/house.py)"
python tools/house.py --check > /dev/null || python tools/house.py --check

echo "== architecture: the drawn import graph has one module per notebook (tools/architecture.py)"
python tools/architecture.py --check

echo "== hygiene: README rendered from nbs/index.ipynb"
python tools/readme.py --check

# Notebooks and test files run two at a time, each with one torch thread. Most tests are short runs that wait on
# imports, subprocesses and local servers, so one process at a time leaves a core idle; two processes with two
# threads each oversubscribe the cores. Measured on 2 cores: pytest 774 s serial, 540 s with 2 workers x 1 thread,
# 863 s with 2 workers x 2 threads; nbdev_test 74 s with 2 threads per notebook, 39 s with 1.
# LLAMADUO_TEST_WORKERS=0 runs tests/ serially with torch's own thread count.
workers=${LLAMADUO_TEST_WORKERS:-2}
xdist=()
if [ "$workers" -gt 0 ]; then xdist=(-n "$workers" --dist loadfile); export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; fi

echo "== nbdev_test (notebooks; flags slow, gpu, api skipped)"
nbdev_test --n_workers 2 --timing

echo "== pytest tests/ (${workers:-0} workers, one test file per worker at a time)"
set +e
python -m pytest tests -q -m "not benchmark" -p no:cacheprovider --timeout 600 "${xdist[@]}" "$@"
rc=$?
set -e
echo "suite wall time: $((SECONDS - t0)) s"
exit $rc
