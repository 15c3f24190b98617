"""Run every benchmark in this folder, one after another, each in its own interpreter.

    .venv/bin/python benchmarks/run_all.py [--quick]

Each script prints its figures beside a baseline measured in the same run; run this on an
otherwise idle machine (other load skews ratios less than absolute numbers, but it does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    extra = sys.argv[1:]
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        failed |= subprocess.call([sys.executable, str(script), *extra]) != 0
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
