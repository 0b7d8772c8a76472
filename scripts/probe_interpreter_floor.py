"""The cost floor of one sandboxed process per node on this machine, against plain in-process `exec`.

    python scripts/probe_interpreter_floor.py [--nodes 64] [--in-flight 16] [--steps 20]

Issue 14 asks the interpreter bench to reach 0.25x of plain `exec` at 64 nodes. This probe asks what
the process-per-node design can reach at best here, by stripping the pool down to its bones. It
forks `--nodes` processes from a process that has the sandbox preloaded and warmed up, as the fork
server does, and hardens them the same way (`os_limits.Hardening`). The parent keeps `--in-flight`
cells running over epoll, as the pool does by default on 2 cores. There are no JSON frames, no
message types, no CPU timer and no garbage collection. Each step runs one trivial cell per node,
every cell distinct (`bench_interpreter.TRIVIAL_CELL` with a trailing comment). Rows:

  ipc only        the children echo a short reply and run nothing (the wake-ups alone);
  sandbox cells   the children check, compile and run the cell with `NodeRuntime.run_cell`;
  compiled here   the parent checks and compiles (`restrictions.compile_cell`), sends the code
                  object (marshal), and the children only run it.

The baseline runs the same cells through `exec` in this process, in one namespace per node. CPU
times come from /proc/<pid>/schedstat (nanoseconds on the CPU), per cell.
"""
from __future__ import annotations

import argparse
import gc
import marshal
import os
import select
import socket
import statistics
import sys
import time

from rao_jax.agent.interpreter import cell, os_limits, restrictions
from rao_jax.agent.interpreter.forkserver import _NoHost, _warm_up

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_interpreter import TRIVIAL_CELL  # noqa: E402

VARIANTS = ("ipc only", "sandbox cells", "compiled here")


def _cpu_ns(pid: int) -> int:
  with open(f"/proc/{pid}/schedstat") as f:
    return int(f.read().split()[0])


def _serve(fd: int, variant: str, hardening: os_limits.Hardening) -> None:
  """A child's loop: one cell per message, one reply per cell, until the parent closes."""
  hardening.apply()
  node = cell.NodeRuntime(0, _NoHost(), variables={}, tool_names=(), delegation=False, max_depth=0,
                          max_output_chars=1000, time_limit_s=10.0)
  compiled = [None]
  if variant == "compiled here":
    restrictions.compile_cell = lambda code: compiled[0]  # This child only runs what it is sent.
  while True:
    data = os.read(fd, 1 << 16)
    if not data:
      os._exit(0)
    if variant == "ipc only":
      reply = b"x = 45\n"
    elif variant == "compiled here":
      compiled[0] = marshal.loads(data)
      reply = node.run_cell("").text.encode()
    else:
      reply = node.run_cell(data.decode()).text.encode()
    os.write(fd, reply)


def probe(variant: str, nodes: int, in_flight: int, steps: int,
          hardening: os_limits.Hardening) -> tuple[float, float, float]:
  """(seconds per cell, child CPU seconds per cell, parent CPU seconds per cell)."""
  connections, pids = [], []
  for _ in range(nodes):
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
      ours.close()
      _serve(theirs.fileno(), variant, hardening)
    theirs.close()
    ours.setblocking(False)
    connections.append(ours)
    pids.append(pid)
  poller = select.epoll()
  by_fd = {}
  for connection in connections:
    poller.register(connection.fileno(), select.EPOLLIN)
    by_fd[connection.fileno()] = connection

  def message(step: int, node: int) -> bytes:
    source = f"{TRIVIAL_CELL}\n# step {step} node {node}"
    if variant == "compiled here":
      return marshal.dumps(restrictions.compile_cell(source))
    return source.encode()

  def run_step(step: int) -> None:
    pending, running, done = list(range(nodes)), 0, 0
    while done < nodes:
      while pending and running < in_flight:
        node = pending.pop()
        connections[node].send(message(step, node))
        running += 1
      for fd, _ in poller.poll():
        by_fd[fd].recv(1 << 16)
        running -= 1
        done += 1

  for step in range(3):  # Warm-up: the children's first cells touch their copied pages.
    run_step(-1 - step)
  children, parent = sum(_cpu_ns(p) for p in pids), _cpu_ns(os.getpid())
  start = time.perf_counter()
  for step in range(steps):
    run_step(step)
  wall = time.perf_counter() - start
  children = sum(_cpu_ns(p) for p in pids) - children
  parent = _cpu_ns(os.getpid()) - parent
  poller.close()
  for connection in connections:
    connection.close()
  for pid in pids:
    os.waitpid(pid, 0)
  cells = nodes * steps
  return wall / cells, children / 1e9 / cells, parent / 1e9 / cells


def exec_seconds_per_cell(nodes: int, steps: int) -> float:
  """Plain `exec` of the same cells in this process (print goes to a throw-away list)."""
  sink = []
  namespaces = [{"print": lambda *a, **k: sink.append(a)} for _ in range(nodes)]
  times = []
  for step in range(-1, steps):
    start = time.perf_counter()
    for node, namespace in enumerate(namespaces):
      exec(f"{TRIVIAL_CELL}\n# step {step} node {node}", namespace)  # noqa: S102 - our own cells.
    if step >= 0:
      times.append((time.perf_counter() - start) / nodes)
    sink.clear()
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--nodes", type=int, default=64)
  parser.add_argument("--in-flight", type=int, default=16)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  _warm_up()
  gc.disable()
  gc.freeze()
  hardening = os_limits.Hardening(512, 600)
  print(f"{args.nodes} node processes, {args.in_flight} cells in flight, {args.steps} steps\n")
  print("| variant | cells/s | exec cells/s | ratio | wall us/cell | child CPU us/cell "
        "| parent CPU us/cell |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for variant in VARIANTS:
    wall, child, parent = probe(variant, args.nodes, args.in_flight, args.steps, hardening)
    baseline = exec_seconds_per_cell(args.nodes, args.steps)
    print(f"| {variant} | {1 / wall:,.0f} | {1 / baseline:,.0f} | {baseline / wall:.3f} "
          f"| {1e6 * wall:.0f} | {1e6 * child:.0f} | {1e6 * parent:.0f} |", flush=True)


if __name__ == "__main__":
  main()
