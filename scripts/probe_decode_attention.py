"""How a decode step's attention is written decides its speed: the same products in several forms and
cache layouts, timed in one run against a sum over the same bytes (the read floor).

    python scripts/probe_decode_attention.py                    # the bench model: S = 64, T = 1152
    python scripts/probe_decode_attention.py --slots 8 --window 4096

Each form runs the `tiny` preset's 4 layers of single-query grouped attention (2 KV heads x 64, 2 query
heads per KV head) over S slots x T positions, float32, 10 steps in one jitted loop; median ms per step
of 5 calls. "[B, K, T, D], keys on the left" is `attention._single_query_attention` as the model runs it.

The second table is the window-bucket idea (attend only over the first W positions, one program per W):
our form over `cache[:, :, :W]`, with the number of W-sized buffers XLA materialises (the slices it
copies before the matmuls, `rao_jax.hlo_inspect`).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rao_jax import hlo_inspect

LAYERS, KV_HEADS, GROUP, HEAD_DIM = 4, 2, 2, 64


def _softmax(logits, mask, axis):
  return jax.nn.softmax(jnp.where(mask, logits, -1e30), axis=axis)


# Each form: (cache layout, attention(q [B, K, G, D], k, v, live [B, T] bool) -> [B, K, G, D]).
FORMS = {
    "[B, K, T, D], keys on the left (ours)": ("bktd", lambda q, k, v, m: jnp.einsum(
        "bktg,bktd->bkgd", _softmax(jnp.einsum("bktd,bkgd->bktg", k, q), m[:, None, :, None], 2), v)),
    "[B, K, T, D], queries on the left": ("bktd", lambda q, k, v, m: jnp.einsum(
        "bkgt,bktd->bkgd", _softmax(jnp.einsum("bkgd,bktd->bkgt", q, k), m[:, None, None, :], -1), v)),
    "[B, K, T, D], multiply-reduce": ("bktd", lambda q, k, v, m: jnp.sum(
        _softmax(jnp.sum(k[:, :, :, None, :] * q[:, :, None, :, :], -1), m[:, None, :, None], 2)[..., None]
        * v[:, :, :, None, :], 2)),
    "[B, T, K, D], keys on the left": ("btkd", lambda q, k, v, m: jnp.einsum(
        "btkg,btkd->bkgd", _softmax(jnp.einsum("btkd,bkgd->btkg", k, q), m[:, :, None, None], 1), v)),
    "[B, T, K, D], queries on the left": ("btkd", lambda q, k, v, m: jnp.einsum(
        "bkgt,btkd->bkgd", _softmax(jnp.einsum("bkgd,btkd->bkgt", q, k), m[:, None, None, :], -1), v)),
    "[B, T, K, D], multiply-reduce (before)": ("btkd", lambda q, k, v, m: jnp.sum(
        _softmax(jnp.sum(q[:, None] * k[:, :, :, None, :], -1), m[:, :, None, None], 1)[..., None]
        * v[:, :, :, None, :], 1)),
}


def _median_ms(fn, *args, steps: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(5):
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append((time.perf_counter() - started) / steps)
  return 1e3 * float(np.median(times))


def time_form(attend, layout: str, slots: int, window: int, steps: int = 10, *,
              attended: int | None = None) -> tuple[float, int]:
  """Median ms per step, and the buffers of at least one layer's `attended` positions the compiled loop
  materialises. `attended`: the positions each step reads (default all `window`)."""
  shape = (slots, KV_HEADS, window, HEAD_DIM) if layout == "bktd" else (slots, window, KV_HEADS, HEAD_DIM)
  rng = np.random.default_rng(0)
  keys = [jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(LAYERS)]
  values = [jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(LAYERS)]
  q = jnp.asarray(rng.standard_normal((slots, KV_HEADS, GROUP, HEAD_DIM)), jnp.float32)
  live = jnp.ones((slots, window), bool)

  width = attended or window
  window_of = (lambda x: x[:, :, :width]) if layout == "bktd" else (lambda x: x[:, :width])

  @jax.jit
  def run(q, keys, values):
    def step(_, q):
      for k, v in zip(keys, values):
        q = attend(q, window_of(k), window_of(v), live[:, :width])
      return q
    return jax.lax.fori_loop(0, steps, step, q)
  hlo = run.lower(q, keys, values).compile().as_text()
  made = hlo_inspect.large_materialisations(hlo, slots * KV_HEADS * width * HEAD_DIM * 4)
  return _median_ms(run, q, keys, values, steps=steps), len(made)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--slots", type=int, default=64)
  parser.add_argument("--window", type=int, default=1152)
  args = parser.parse_args()
  cache = jnp.ones((2 * LAYERS * args.slots * KV_HEADS * args.window * HEAD_DIM,), jnp.float32)
  floor = _median_ms(jax.jit(jnp.sum), cache, steps=1)
  print(f"S = {args.slots}, T = {args.window}: {cache.nbytes / 1e6:.0f} MB of keys and values; "
        f"a sum over them takes {floor:.1f} ms\n")
  print("| form | ms / step | × the sum | ours / this |\n|---|---:|---:|---:|")
  results = {name: time_form(attend, layout, args.slots, args.window)[0]
             for name, (layout, attend) in FORMS.items()}
  ours = next(iter(results.values()))
  for name, ms in results.items():
    print(f"| {name} | {ms:.1f} | {ms / floor:.1f} | {ours / ms:.2f} |")
  layout, attend = next(iter(FORMS.values()))
  print("\n| positions read W | ms / step | × the whole window's time | W-sized buffers made |\n|---:|---:|---:|---:|")
  for width in (args.window, args.window // 2, args.window // 4):
    ms, made = time_form(attend, layout, args.slots, args.window, attended=width)
    print(f"| {width} | {ms:.1f} | {ms / ours:.2f} | {made} |")


if __name__ == "__main__":
  main()
