"""Where a train step's time goes on XLA:CPU: per-op time from a JAX profiler trace, page faults per step.

    python scripts/probe_train_step_profile.py --shape tiny:8x512
    RAO_JAX_HOST_MALLOC=retain python scripts/probe_train_step_profile.py --shape tiny:8x512

Times `--steps` steps (after two warm-ups), then traces two more with `jax.profiler` (a Perfetto trace)
and prints:
  - the step time, and the minor page faults and kernel CPU time per step (`resource.getrusage`);
  - the compiled step's ops grouped by kind (the XLA fusion name without its number: `ynn_fusion` is a
    matmul handed to YNNPACK, `copy_bitcast_fusion` mostly a transpose, ...), with their summed time per
    step, and the `--top` slowest single ops with their result shapes.
Ops on the two cores overlap, so the summed op time can exceed the step time.
This is the probe behind docs/performance.md, "Host page faults".
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import tempfile
import time

import bench_train
import jax

from rao_jax import host_memory

_RUNTIME_EVENTS = ("Thunk", "$", "Slinky", "Pjit", "end:", "Common", "Python", "Handle", "Alloc", "Wait",
                   "Parse", "shard", "Device", "Threadpool")


def op_times(trace_dir: str, traced_steps: int) -> collections.Counter:
  """Milliseconds per step of every compiled op in the newest Perfetto trace under `trace_dir`."""
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
  if not files:
    raise RuntimeError(f"no Perfetto trace under {trace_dir}")
  with gzip.open(files[-1]) as f:
    events = json.load(f)["traceEvents"]
  times = collections.Counter()
  for event in events:
    if event.get("ph") == "X" and not event["name"].startswith(_RUNTIME_EVENTS):
      times[event["name"]] += event.get("dur", 0) / 1e3 / traced_steps
  return times


def result_shapes(hlo_text: str) -> dict[str, str]:
  """Op name -> its result shape, from the compiled HLO text."""
  return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+)", hlo_text, re.M)}


def main() -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="tiny:8x512", help="PRESET:ROWSxT")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--top", type=int, default=15)
  args = parser.parse_args()
  step, state, batch, nodes = bench_train.build_case(bench_train.parse_shape(args.shape))
  for _ in range(2):
    state, metrics = step(state, batch, *nodes)
    jax.block_until_ready(metrics)
  usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  for _ in range(args.steps):
    state, metrics = step(state, batch, *nodes)
    jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / args.steps
  after = resource.getrusage(resource.RUSAGE_SELF)
  print(f"{args.shape}, {host_memory.ENV_VAR}={host_memory.host_malloc_choice()}: {step_s * 1e3:,.0f} ms "
        f"per step, {(after.ru_minflt - usage.ru_minflt) / args.steps:,.0f} page faults and "
        f"{(after.ru_stime - usage.ru_stime) / args.steps:.3f} s of kernel time per step\n")

  traced_steps = 2
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(traced_steps):
      state, metrics = step(state, batch, *nodes)
      jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    times = op_times(trace_dir, traced_steps)
  shapes = result_shapes(step.jitted.lower(state, batch.micro_batches(1), *nodes).compile().as_text())

  kinds = collections.Counter()
  for name, ms in times.items():
    kinds[re.sub(r"\.\d+$", "", name)] += ms
  print(f"| op kind | ms per step | share of summed op time ({sum(times.values()):,.0f} ms) |")
  print("|---|---:|---:|")
  for kind, ms in kinds.most_common(12):
    print(f"| {kind} | {ms:,.1f} | {ms / sum(times.values()):.2f} |")
  print("\n| slowest op | ms per step | result |\n|---|---:|---|")
  for name, ms in times.most_common(args.top):
    print(f"| {name} | {ms:,.1f} | {shapes.get(name, '?')[:60]} |")


if __name__ == "__main__":
  main()
