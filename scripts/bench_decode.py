"""Decoding throughput: batched KV-cached generation vs. the cache-free loop and vs. batch 1.

Usage:
  python scripts/bench_decode.py            # tiny and small presets, batch 1, 16, 64, 256 (a few minutes)
  python scripts/bench_decode.py --quick    # seconds: tiny preset, batch 1 and 8, short continuation

Each row times one greedy `rao_jax.rollout.generate.generate` call (the rollout engine's device program:
prefill of a short random prompt + `new_tokens` decode steps, no stop sequence so every row generates them
all) after a warm-up that compiles the same programs, and reports generated tokens per second. The uncached
baseline (`generate_uncached` below: a full forward over the sequence so far for every token, lengths
bucketed to powers of two) is timed at the batch sizes given by --uncached_batch_sizes only, since it is
quadratic in length; its outputs are checked to be identical.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rao_jax import host_memory, roofline
from rao_jax.model.config import get_preset
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.generate import bucket_length, generate


def _parse_ints(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def _per_preset(text: str, presets: list[str]) -> dict[str, str]:
  """"tiny=a,small=b" -> {"tiny": "a", "small": "b"}; a value without "=" applies to every preset."""
  if "=" not in text:
    return {p: text for p in presets}
  return dict(item.split("=", 1) for item in text.split(",") if item)


def _timed(fn) -> tuple[float, object]:
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _argmax_after(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
  """Full causal forward over right-padded tokens [B, L]; the argmax [B] int32 at position lengths - 1."""
  logits, _ = nnx.merge(graphdef, params)(tokens)
  return jnp.argmax(jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0], axis=-1)


def generate_uncached(model: Transformer, prompts: list[list[int]], *, max_new_tokens: int,
                      max_len: int) -> list[list[int]]:
  """The baseline: greedy continuations, every step a full forward over the sequences so far, right-padded
  to a power-of-two bucket of the longest (within 2x of the exact length; few programs compiled)."""
  graphdef, params = nnx.split(model)
  sequences = np.zeros((len(prompts), bucket_length(max_len)), np.int32)
  for row, prompt in zip(sequences, prompts):
    row[:len(prompt)] = prompt
  lengths = np.array([len(p) for p in prompts], np.int32)
  outputs = [[] for _ in prompts]
  for _ in range(max_new_tokens):
    padded = bucket_length(int(lengths.max()))
    tokens = np.asarray(_argmax_after(graphdef, params, jnp.asarray(sequences[:, :padded]), jnp.asarray(lengths)))
    for b in np.flatnonzero(lengths < max_len):
      outputs[b].append(int(tokens[b]))
      sequences[b, lengths[b]] = tokens[b]
      lengths[b] += 1
  return outputs


def _warm_up_uncached(model, batch: int, prompt_len: int, max_len: int) -> None:
  """Compiles every padded length the timed uncached run will use, one cheap call per bucket."""
  length = prompt_len
  while length < max_len:
    generate_uncached(model, [[1] * length] * batch, max_new_tokens=1, max_len=max_len)
    length = bucket_length(length) + 1


def bench_preset(name: str, batch_sizes: list[int], uncached_batch_sizes: list[int], prompt_len: int,
                 new_tokens: int, seed: int) -> list[dict]:
  config = get_preset(name)
  model = nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(seed)))()
  max_len = prompt_len + new_tokens
  rng = np.random.default_rng(seed)
  rows = []
  for batch in batch_sizes:
    prompts = rng.integers(0, config.vocab_size, (batch, prompt_len)).tolist()
    generate(model, prompts, max_new_tokens=1, max_len=max_len)  # compiles the same program
    cached_s, cached = _timed(lambda: generate(model, prompts, max_new_tokens=new_tokens, max_len=max_len))
    assert all(len(row) == new_tokens for row in cached)
    row = dict(preset=name, params=config.num_params, batch=batch, cached=batch * new_tokens / cached_s,
               step_cost=roofline.decode_step_cost(config, [max_len] * batch))
    if batch in uncached_batch_sizes:
      _warm_up_uncached(model, batch, prompt_len, max_len)
      uncached_s, uncached = _timed(lambda: generate_uncached(model, prompts, max_new_tokens=new_tokens,
                                                              max_len=max_len))
      row.update(uncached=batch * new_tokens / uncached_s, same_tokens=uncached == cached)
    rows.append(row)
    print(f"  {name} batch {batch}: {row}", flush=True)
  return rows


def markdown_table(rows: list[dict], prompt_len: dict[str, int], new_tokens: dict[str, int],
                   machine: roofline.Machine) -> str:
  """One row per (preset, batch). "floor tok/s": batch / the decode step's roofline floor (every weight
  and the whole max_len window of keys and values read per step, `rao_jax.roofline`); the fraction is
  the cached rate over it (prefill included in the cached time)."""
  lines = ["| preset | params | prompt + new | batch | cached tok/s | uncached tok/s | cached / uncached "
           "| cached / cached at batch 1 | same tokens | floor tok/s | fraction of floor |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  batch1 = {r["preset"]: r["cached"] for r in rows if r["batch"] == 1}
  for r in rows:
    if "uncached" in r:
      uncached, speedup = f"{r['uncached']:,.0f}", f"{r['cached'] / r['uncached']:.1f}x"
      same = "yes" if r["same_tokens"] else "NO"
    else:
      uncached, speedup, same = "not run", "-", "-"
    vs_batch1 = f"{r['cached'] / batch1[r['preset']]:.1f}x" if r["preset"] in batch1 else "-"
    floor_rate = r["batch"] / r["step_cost"].floor_s(machine)
    lines.append(f"| {r['preset']} | {r['params'] / 1e6:.1f}M | {prompt_len[r['preset']]} + "
                 f"{new_tokens[r['preset']]} | {r['batch']} | {r['cached']:,.0f} | {uncached} | {speedup} "
                 f"| {vs_batch1} | {same} | {floor_rate:,.0f} | {r['cached'] / floor_rate:.2f} |")
  return "\n".join(lines)


def main() -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--presets", default="tiny,small")
  parser.add_argument("--batch_sizes", default="1,16,64,256")
  parser.add_argument("--uncached_batch_sizes", default="tiny=1:16,small=1",
                      help="batch sizes at which the uncached baseline is also timed, per preset "
                           "(name=b1:b2,...) or one list for all (b1:b2)")
  parser.add_argument("--prompt_len", type=int, default=16)
  parser.add_argument("--new_tokens", default="tiny=240,small=112",
                      help="tokens generated per row, per preset (name=n,...) or one number for all")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true", help="tiny preset, batch 1 and 8, 24 new tokens")
  args = parser.parse_args()
  if args.quick:
    args.presets, args.batch_sizes, args.uncached_batch_sizes, args.new_tokens = "tiny", "1,8", "1:8", "24"
  presets = [p for p in args.presets.split(",") if p]
  new_tokens = {p: int(v) for p, v in _per_preset(args.new_tokens, presets).items()}
  uncached_batch_sizes = {p: [int(b) for b in v.split(":") if b]
                          for p, v in _per_preset(args.uncached_batch_sizes, presets).items()}

  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, load average at start "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
  machine = roofline.measure_machine()
  print(machine.describe(), flush=True)
  rows = []
  for preset in presets:
    rows += bench_preset(preset, _parse_ints(args.batch_sizes), uncached_batch_sizes.get(preset, []),
                         args.prompt_len, new_tokens[preset], args.seed)
  print()
  print(markdown_table(rows, {p: args.prompt_len for p in presets}, new_tokens, machine))


if __name__ == "__main__":
  main()
