"""Run every `loadtests/bench_*.py` in turn (`make bench`). Each prints its figures and baseline.

That includes the multi-node benchmark (`bench_scale`, 1-3 nodes with Redis) at its default sizes;
`mem_profile` is a diagnostic (tracemalloc), not a benchmark, and is not run here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    failed = 0
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        module = f"loadtests.{path.stem}"
        print(f"\n=== {module} ===", flush=True)
        failed += subprocess.call([sys.executable, "-m", module]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
