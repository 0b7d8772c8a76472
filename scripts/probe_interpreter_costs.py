"""Where the sandboxed interpreter's time goes: a tool call's round trip and an activation's cost.

    python scripts/probe_interpreter_costs.py

Prints (1) the wall time of one tool call from a node's cell (a loop of 3,000 calls of the toy
environment's `points()` in one cell, so each is one message to the pool and one answer back), and
(2) the wall time of one cell activation when one running node at a time takes turns over 1, 4, 16
and 64 node processes (each cell a distinct one-line assignment, so it is checked and compiled anew),
and (3) the median memory of its own (PSS, from /proc/<pid>/smaps_rollup) of the 64 node processes.
docs/sandbox.md quotes these numbers.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "agent"))

from rao_jax.agent.interpreter import InterpreterConfig, InterpreterPool  # noqa: E402
from test_interpreter_toy_env import TOY_ENV  # noqa: E402  (registers the toy environment)

CALLS = 3000


def _pss_kib(pid: int) -> int:
  with open(f"/proc/{pid}/smaps_rollup") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def main() -> None:
  with InterpreterPool(InterpreterConfig(cell_time_limit_s=30.0, max_running_cells=1)) as pool:
    pool.create_roots([(-1, TOY_ENV, {}, {"target": 1})], max_depth=3, delegation=True)
    pool.run_cells([(-1, "x = 1")])
    for _ in range(3):
      start = time.perf_counter()
      pool.run_cells([(-1, f"for i in range({CALLS}):\n  points()")])
      print(f"tool call round trip: {1e6 * (time.perf_counter() - start) / CALLS:.0f} us")
    for count in (1, 4, 16, 64):
      ids = list(range(count * 1000, count * 1000 + count))
      pool.create_roots([(i, TOY_ENV, {}, {"target": 1}) for i in ids], max_depth=3, delegation=True)
      pool.run_cells([(i, "x = 1") for i in ids])  # starts the processes
      rounds = max(1, 256 // count)
      start = time.perf_counter()
      for r in range(rounds):
        pool.run_cells([(i, f"x = {r}") for i in ids])
      per = (time.perf_counter() - start) / (rounds * count)
      print(f"activation, one running at a time over {count} nodes: {1e6 * per:.0f} us")
      if count == 64:
        pss = sorted(_pss_kib(pool._nodes[i].process.pid) for i in ids)  # noqa: SLF001 - a probe
        print(f"node process memory (PSS), median of {count}: {pss[count // 2] / 1024:.1f} MiB")
      pool.release(ids)


if __name__ == "__main__":
  main()
