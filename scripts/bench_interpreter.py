"""Throughput and latency of the sandboxed interpreter against plain in-process `exec`.

For each workload (a trivial cell; a tool-heavy TextCraft-Synth cell) and each number of concurrent
nodes N, every step runs one cell on each of the N nodes as one `run_cells` batch (what the rollout
engine does each round). Latency is the batch's wall time (what every cell in it waits); throughput
is cells per second. The baseline runs the same cells with plain `exec` in this process, in one
persistent namespace per node holding the same tools (no isolation: the unsafe lower bound). Every
cell is made unique (a trailing comment), as model-written cells are, so neither side can reuse a
compiled cell: both pay parsing and compiling, and the sandbox also pays its AST checks.

Every sandboxed node runs in its own process, and its tool calls are messages to this process (which
holds the environments), so the sandbox's columns include one socket round trip per tool call. The
nodes' processes start with their first cell (a fork from the fork server, the OS limits, the
namespace); that start-up is kept out of the steady-state columns and shown on its own: the first
batch's wall time, and per node the first batch's excess over a steady-state batch.

    python scripts/bench_interpreter.py                 # full table
    python scripts/bench_interpreter.py --nodes 1,64 --steps 5   # the numbers in docs/performance.md
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool
from rao_jax.envs import registry
from rao_jax.envs.textcraft_synth import tasks as tasks_lib
from rao_jax.envs.textcraft_synth import world as world_lib

ENV_NAME = "textcraft_synth"
ENV_CONFIG = {"world": "small"}
TRIVIAL_CELL = "x = sum(range(10))\nprint('x =', x)"


def tool_heavy_cell(world: world_lib.World, task: tasks_lib.Task) -> str:
  """view_inventory, get_info on four items, and two craft calls (which may fail and say why)."""
  (target, _), = task.targets.items()
  first_craft, _ = task.gold_plan[0]
  recipe = world.item(first_craft).recipe
  ingredients = {name: units for name, units in recipe.ingredients}
  names = [target, first_craft, *list(ingredients)[:2]]
  return (f"inventory = view_inventory()\n"
          f"info = get_info({names!r})\n"
          f"print(craft({ingredients!r}, ({first_craft!r}, {recipe.result_count})))\n"
          f"print(craft({ingredients!r}, ({first_craft!r}, {recipe.result_count})))\n"
          f"print(len(inventory), [i['name'] for i in info])")


def unique(code: str, step: int, node: int) -> str:
  return f"{code}\n# step {step} node {node}"


def percentile(samples: list[float], q: float) -> float:
  ordered = sorted(samples)
  return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_pool(pool: InterpreterPool, tasks: list[dict], code: str, nodes: int, steps: int,
               first_id: int) -> tuple[float, list[float]]:
  """(the first batch's wall time, which starts every node's process; steady-state batch times)."""
  ids = list(range(first_id, first_id + nodes))
  prompts = pool.create_roots([(i, ENV_NAME, ENV_CONFIG, tasks[k % len(tasks)])
                               for k, i in enumerate(ids)], max_depth=6, delegation=True)
  assert not any(isinstance(p, str) for p in prompts), prompts[:1]
  start = time.perf_counter()
  pool.run_cells([(i, code) for i in ids])  # Starts the nodes' processes.
  first_batch = time.perf_counter() - start
  latencies = []
  for step in range(steps):
    cells = [(i, unique(code, step, i)) for i in ids]
    start = time.perf_counter()
    results = pool.run_cells(cells)
    latencies.append(time.perf_counter() - start)
    bad = [r for r in results if r.status not in (CellStatus.OUTPUT, CellStatus.ERROR)]
    assert not bad, bad[:1]
  pool.release(ids)
  return first_batch, latencies


def bench_exec(tasks: list[dict], code: str, nodes: int, steps: int) -> list[float]:
  namespaces = []
  for k in range(nodes):
    env = registry.make_root_environment(ENV_NAME, ENV_CONFIG, tasks[k % len(tasks)])
    namespaces.append({**env.tools(), **env.namespace_variables()})
  sink = io.StringIO()
  latencies = []
  for step in range(steps + 1):
    cells = [unique(code, step, k) for k in range(nodes)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink):
      for namespace, cell in zip(namespaces, cells):
        exec(cell, namespace)  # noqa: S102 - the unsafe baseline, on our own benchmark cells.
    if step:  # The first pass is the warm-up.
      latencies.append(time.perf_counter() - start)
    sink.seek(0)
    sink.truncate()
  return latencies


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--nodes", default="1,64,512")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--max-running", type=int, default=0,
                      help="InterpreterConfig.max_running_cells (0: the default, eight per core)")
  args = parser.parse_args()

  world = world_lib.get_world(ENV_CONFIG["world"])
  splits = tasks_lib.build_splits(world, tasks_lib.TaskConfig(num_train=64, num_val=0))
  task_objects = splits["train"]
  tasks = [t.to_dict() for t in task_objects]
  workloads = {"trivial": TRIVIAL_CELL, "textcraft tools": tool_heavy_cell(world, task_objects[0])}

  start = time.perf_counter()
  pool = InterpreterPool(InterpreterConfig(max_running_cells=args.max_running))
  startup = time.perf_counter() - start
  print(f"pool start-up (fork server and one probe node): {startup:.2f} s; "
        f"sandbox: {pool.sandbox_report}\n")
  print("| workload | nodes | sandbox cells/s | exec cells/s | ratio | p50 ms | p90 ms | p99 ms "
        "| exec p50 ms | first batch ms | start ms/node |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  first_id = 0
  with pool:
    for name, code in workloads.items():
      for nodes in (int(n) for n in args.nodes.split(",")):
        steps = max(3, args.steps // max(1, nodes // 64))
        first_batch, sandboxed = bench_pool(pool, tasks, code, nodes, steps, first_id)
        first_id += nodes
        plain = bench_exec(tasks, code, nodes, steps)
        rate = nodes / statistics.mean(sandboxed)
        plain_rate = nodes / statistics.mean(plain)
        print(f"| {name} | {nodes} | {rate:,.0f} | {plain_rate:,.0f} | {rate / plain_rate:.3f} "
              f"| {1e3 * percentile(sandboxed, 0.5):.2f} | {1e3 * percentile(sandboxed, 0.9):.2f} "
              f"| {1e3 * percentile(sandboxed, 0.99):.2f} | {1e3 * percentile(plain, 0.5):.2f} "
              f"| {1e3 * first_batch:.1f} "
              f"| {1e3 * (first_batch - percentile(sandboxed, 0.5)) / nodes:.2f} |", flush=True)


if __name__ == "__main__":
  main()
