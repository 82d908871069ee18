"""On-demand mutation check (not part of `make test`): break one thing at a time in a copy of the tree and
run the tests that should notice. A mutant the tests do not kill is a survivor: a feature whose breakage
the suite cannot see.

    .venv/bin/python tests/mutation/run.py            # every mutant in tests/mutation/mutants.py
    .venv/bin/python tests/mutation/run.py -k temporal # those whose name contains "temporal"

Each mutant replaces one exact snippet of one file (the run fails loudly if the snippet is gone, so the
list cannot rot silently) and names the test files to run. The copy is made once; each mutant is applied,
tested and reverted in it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import MUTANTS  # noqa: E402 - importable only after the sys.path entry above


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's test run")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.k in m.name]
    copy = Path(tempfile.mkdtemp(prefix="vcam-mutants-"))
    shutil.copytree(ROOT, copy / "tree", ignore=shutil.ignore_patterns(".venv*", ".git", "__pycache__",
                                                                         ".pytest_cache", "*.egg-info"))
    tree = copy / "tree"
    # the copy lives elsewhere, so its ../shared/testdata would not resolve: point at this tree's, and
    # count missing data as a failure (CI), so that no mutant survives by its tests skipping
    sys.path.insert(0, str(ROOT))
    from vcam.testdata import testdata_dir

    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1",
               VCAM_TESTDATA=str(testdata_dir()), CI=os.environ.get("CI") or "mutation")
    survivors, rows = [], []
    try:
        for m in chosen:
            path = tree / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                raise SystemExit(f"mutant {m.name}: the snippet is not in {m.path} exactly once; "
                                 "update mutants.py")
            path.write_text(original.replace(m.old, m.new))
            t0 = time.monotonic()
            try:
                proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                       *m.tests], cwd=tree, env=env, capture_output=True, text=True,
                                      timeout=args.timeout)
                killed = proc.returncode != 0
            except subprocess.TimeoutExpired:
                killed = True  # a hang is noticed too
            finally:
                path.write_text(original)
            rows.append((m.name, "killed" if killed else "SURVIVED", time.monotonic() - t0))
            print(f"{rows[-1][1]:8s} {m.name} ({rows[-1][2]:.0f} s)", flush=True)
            if not killed:
                survivors.append(m)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    print(f"\n{len(rows) - len(survivors)} of {len(rows)} mutants killed")
    for m in survivors:
        print(f"survivor: {m.name}: {m.why}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
