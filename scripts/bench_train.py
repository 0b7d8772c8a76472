"""Train-step throughput: tokens/s and achieved FLOP/s against this machine's measured matmul peak;
memory and time of query-chunked attention and layer remat against the plain step.

    python scripts/bench_train.py            # tiny and small presets
    python scripts/bench_train.py --quick    # smaller batches, fewer steps

FLOPs per step (`rao_jax.roofline.train_step_cost`: the dense work the step performs, padding positions
included, stated per token):
    6 · P_matmul                        forward + backward of every weight matrix (P_matmul = parameters
                                        used in matmuls: all but the input embedding when untied)
  + 12 · layers · heads · head_dim · T  attention scores and values over the full T × T (masked) square
achieved FLOP/s = FLOPs per step / step time; peak = a large float32 `jnp.dot` timed in the same run.
The step is compute-bound, so its floor is FLOPs / peak and the fraction of the floor is the ratio of
achieved FLOP/s to the peak.

With RAO_JAX_HOST_MALLOC=retain (`rao_jax.host_memory`) each step reuses the last one's freed temporaries
instead of faulting them in afresh; `scripts/bench_host_memory.py` times the steps both ways.

The second table compiles the same step with `attention_chunk_size` and `remat` on and off and reports
XLA's temporary buffer size for the compiled step (`memory_analysis().temp_size_in_bytes`: activations,
attention scores, gradients in flight) and the step time, each as a ratio to the plain step of that table.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

import jax
import numpy as np

from rao_jax import host_memory, roofline, sharding
from rao_jax.model.random_init import random_normal_model
from rao_jax.model.config import ModelConfig, get_preset
from rao_jax.train import packing, train_step as ts
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer


@dataclasses.dataclass(frozen=True)
class Case:
  preset: str
  rows: int
  row_length: int
  num_micro_batches: int = 1
  logits_chunk_size: int = 0
  attention_chunk_size: int = 0
  remat: bool = False


def random_batch(config: ModelConfig, rows: int, row_length: int, seed: int = 0
                 ) -> tuple[packing.PackedBatch, tuple[np.ndarray, np.ndarray]]:
  """Node-like sequences (a quarter to a full row long, 60% policy tokens) packed into exactly `rows` rows,
  and their node advantages and validity ([N] each, all valid)."""
  rng = np.random.default_rng(seed)
  sequences, used = [], 0
  while used < rows * row_length * 0.9:
    length = int(rng.integers(row_length // 4, row_length + 1))
    tokens = rng.integers(0, config.vocab_size, length).astype(np.int32)
    mask = rng.random(length) < 0.6
    sequences.append((tokens, mask, np.where(mask, -2.0, 0.0).astype(np.float32)))
    used += length
  while True:
    try:
      batch, _ = packing.pack_sequences(sequences, rows, row_length)
      break
    except ValueError:
      sequences.pop()
  return batch, (rng.standard_normal(len(sequences)).astype(np.float32), np.ones(len(sequences), bool))


def build_case(case: Case):
  """The case's compiled-on-first-call train step, a fresh train state, a packed batch and its node
  advantages and validity: call `step(state, batch, *nodes)`."""
  config = get_preset(case.preset)
  mesh = sharding.make_mesh()
  tx = make_optimizer(OptimizerConfig(learning_rate=1e-4))
  graphdef, state = ts.create_train_state(random_normal_model(config, scale=0.02), tx, mesh)
  step_config = ts.TrainStepConfig(loss="cispo", num_micro_batches=case.num_micro_batches,
                                   logits_chunk_size=case.logits_chunk_size,
                                   attention_chunk_size=case.attention_chunk_size, remat=case.remat)
  step = ts.make_train_step(graphdef, state, tx, step_config, mesh)
  batch, nodes = random_batch(config, case.rows, case.row_length)
  return step, state, batch, nodes


def time_case(case: Case, steps: int) -> dict:
  config = get_preset(case.preset)
  step, state, batch, nodes = build_case(case)
  compiled = step.jitted.lower(state, batch.micro_batches(case.num_micro_batches), *nodes).compile()
  temp_bytes = compiled.memory_analysis().temp_size_in_bytes
  start = time.perf_counter()
  state, metrics = step(state, batch, *nodes)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  usage_before = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, batch, *nodes)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  usage_after = resource.getrusage(resource.RUSAGE_SELF)
  step_s = float(np.median(times))
  tokens = case.rows * case.row_length
  return dict(case=case, params=config.num_params, compile_s=compile_s, step_s=step_s, temp_bytes=temp_bytes,
              page_faults_per_step=(usage_after.ru_minflt - usage_before.ru_minflt) / steps,
              system_s_per_step=(usage_after.ru_stime - usage_before.ru_stime) / steps,
              tokens_per_s=tokens / step_s, loss_tokens_per_s=float(batch.loss_mask.sum()) / step_s,
              cost=(cost := roofline.train_step_cost(config, case.rows, case.row_length)),
              flops_per_s=cost.flops / step_s)


def parse_shape(shape: str) -> Case:
  """`PRESET:ROWSxT` (e.g. `tiny:8x512`) as a plain Case; ValueError names the expected form."""
  preset, _, size = shape.partition(":")
  rows, _, length = size.partition("x")
  if not (rows.isdigit() and length.isdigit() and int(rows) > 0 and int(length) > 0):
    raise ValueError(f"{shape!r}: expected PRESET:ROWSxT, e.g. tiny:8x512")
  get_preset(preset)
  return Case(preset, int(rows), int(length))


def main() -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="smaller batches and fewer timed steps")
  parser.add_argument("--shapes", nargs="+", metavar="PRESET:ROWSxT",
                      help="time only these steps (e.g. tiny:8x512 tiny:32x128: the same tokens at shorter "
                           "rows show how much of the step is attention); no memory-knob table")
  args = parser.parse_args()
  if args.shapes:
    try:
      cases = [parse_shape(shape) for shape in args.shapes]
    except ValueError as error:
      parser.error(str(error))
    memory_rows, steps, matmul_size = None, 3, 2048
  elif args.quick:
    cases = [Case("tiny", 4, 256), Case("tiny", 4, 256, num_micro_batches=2, logits_chunk_size=64),
             Case("small", 2, 256)]
    memory_rows = ("tiny", 2, 1024)
    steps, matmul_size = 3, 1024
  else:
    cases = [Case("tiny", 8, 512), Case("tiny", 8, 512, num_micro_batches=4, logits_chunk_size=128),
             Case("small", 4, 512), Case("small", 4, 512, num_micro_batches=2, logits_chunk_size=128)]
    memory_rows = ("small", 2, 2048)
    steps, matmul_size = 5, 2048
  machine = roofline.measure_machine(matmul_size=matmul_size)
  peak = machine.matmul_peak
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, host cores: {os.cpu_count()}, "
        f"load average: {os.getloadavg()[0]:.1f}")
  print(f"baseline: float32 [{matmul_size}]^2 matmul peak = {peak / 1e9:.1f} GFLOP/s; {machine.describe()}\n")
  print("| preset | params | rows × T | micro-batches | logits chunk | compile s | step ms | tokens/s "
        "| loss tokens/s | GFLOP/s | floor ms | fraction of floor (ratio to matmul peak) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for case in cases:
    r = time_case(case, steps)
    r["floor_s"] = r["cost"].floor_s(machine)
    print(f"| {case.preset} | {r['params'] / 1e6:.1f}M | {case.rows} × {case.row_length} | "
          f"{case.num_micro_batches} | {case.logits_chunk_size or 'off'} | {r['compile_s']:.1f} | "
          f"{r['step_s'] * 1e3:.0f} | {r['tokens_per_s']:,.0f} | {r['loss_tokens_per_s']:,.0f} | "
          f"{r['flops_per_s'] / 1e9:.1f} | {r['floor_s'] * 1e3:.0f} | {r['floor_s'] / r['step_s']:.2f} |")

  if memory_rows is None:
    return
  preset, rows, row_length = memory_rows
  print(f"\nmemory knobs: {preset}, {rows} × {row_length} rows; baseline = the plain step (first row)\n")
  print("| attention chunk | remat | compile s | step ms | XLA temp MiB | temp vs plain | time vs plain |")
  print("|---|---|---|---|---|---|---|")
  baseline = None
  for chunk, remat in ((0, False), (256, False), (0, True), (256, True)):
    r = time_case(Case(preset, rows, row_length, attention_chunk_size=chunk, remat=remat), steps)
    baseline = baseline or r
    print(f"| {chunk or 'off'} | {'on' if remat else 'off'} | {r['compile_s']:.1f} | {r['step_s'] * 1e3:.0f} | "
          f"{r['temp_bytes'] / 2**20:,.0f} | {r['temp_bytes'] / baseline['temp_bytes']:.2f} | "
          f"{r['step_s'] / baseline['step_s']:.2f} |")


if __name__ == "__main__":
  main()
