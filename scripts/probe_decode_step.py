"""Where a decode step's time goes: the engine's decode program against its roofline floor, with XLA's
own count of the bytes it touches and the cache-sized copies in its compiled loop.

    python scripts/probe_decode_step.py                       # tiny preset, S = 1 and 64, T = 1152
    python scripts/probe_decode_step.py --slots 64 --window 1152 --live 900

For each S: the measured ms per step (median of --repeats calls of --steps steps, every slot
generating at --live cached positions), the floor of the program as written (every slot reads the
whole window) and of a decode that reads only the live positions (`rao_jax.roofline`), XLA's
`cost_analysis()` of the compiled program ("bytes accessed", which counts every operand of every
fused op: an upper bound of what moves), and the buffers the compiled program materialises that are at
least as large as one layer of the cache (`rao_jax.hlo_inspect`: a per-step copy or slice of the cache
shows up here; in-place scatters do not).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np
from flax import nnx

from rao_jax import hlo_inspect, host_memory, roofline
from rao_jax.model.config import get_preset
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.decode_state import DecodeState
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.sampling import SamplingConfig

def probe(model: Transformer, num_slots: int, args: argparse.Namespace, machine: roofline.Machine) -> dict:
  config = model.config
  graphdef, params = nnx.split(model)
  program = DeviceProgram(graphdef, SamplingConfig(temperature=1.0), config.vocab_size)
  state = DecodeState.init(config, num_slots, args.window, args.window, jax.random.key(0))
  state = state.replace(generating=np.ones((num_slots,), bool),
                        lengths=np.full((num_slots,), args.live, np.int32),
                        completion_limit=np.full((num_slots,), args.window, np.int32))
  no_stop = np.full((1, 1), -1, np.int32)
  never = np.int32(num_slots + 1)
  compiled = program.decode.lower(params, state, no_stop, np.int32(args.steps), never).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  copies = hlo_inspect.large_materialisations(compiled.as_text(), state.cache.k[0].nbytes)
  times = []
  for repeat in range(args.repeats + 1):
    state = state.replace(lengths=np.full((num_slots,), args.live, np.int32))
    started = time.perf_counter()
    state, stats = program.decode(params, state, no_stop, np.int32(args.steps), never)
    jax.block_until_ready(state.lengths)
    if repeat:  # the first call also pays for the transfer of the fresh state
      times.append((time.perf_counter() - started) / int(stats.steps))
  step_s = float(np.median(times))
  as_written = roofline.decode_step_cost(config, [args.window] * num_slots, state.cache.dtype)
  live = roofline.decode_step_cost(config, [args.live] * num_slots, state.cache.dtype)
  return dict(slots=num_slots, step_ms=1e3 * step_s, floor_ms=1e3 * as_written.floor_s(machine),
              live_floor_ms=1e3 * live.floor_s(machine), bound=as_written.bound(machine),
              model_mb=as_written.bytes / 1e6, xla_mb=float(cost.get("bytes accessed", np.nan)) / 1e6,
              copies=copies, tokens_per_s=num_slots / step_s)


def main() -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="tiny")
  parser.add_argument("--vocab_size", type=int, default=1024, help="the bench's toy tokenizer's size")
  parser.add_argument("--slots", type=int, nargs="+", default=[1, 64])
  parser.add_argument("--window", type=int, default=1152)
  parser.add_argument("--live", type=int, default=0, help="cached positions per slot (default window / 2)")
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  args.live = args.live or args.window // 2
  config = dataclasses.replace(get_preset(args.preset), vocab_size=args.vocab_size)
  model = Transformer(config, rngs=nnx.Rngs(0))
  machine = roofline.measure_machine()
  print(f"{machine.describe()}; {args.preset} ({config.num_params / 1e6:.1f}M parameters), window "
        f"{args.window}, {args.live} live positions a slot\n")
  print("| S | ms / step | floor ms (whole window) | fraction of floor | floor ms (live only) | bound "
        "| bytes / step MB (model) | XLA bytes accessed MB | cache-sized buffers made | tokens/s |")
  print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
  for num_slots in args.slots:
    r = probe(model, num_slots, args, machine)
    print(f"| {r['slots']} | {r['step_ms']:.2f} | {r['floor_ms']:.2f} | {r['floor_ms'] / r['step_ms']:.2f} | "
          f"{r['live_floor_ms']:.2f} | {r['bound']} | {r['model_mb']:.0f} | {r['xla_mb']:.0f} | "
          f"{len(r['copies'])} | {r['tokens_per_s']:.0f} |", flush=True)
    for found in r["copies"]:
      print(f"    materialised: {found}")


if __name__ == "__main__":
  main()
