"""Roofline floors of the device programs: the bytes and FLOPs each must move and compute, and this
machine's limits, measured in the same run, that turn them into a time no implementation can beat.

A program's floor is max(bytes / bandwidth, FLOPs / peak): it cannot finish before it has read what it
must read, nor before it has done its arithmetic. The benches divide that floor by the measured time
("fraction of the floor": 1.0 is the physical limit) so the numbers chased are the machine's, not a
baseline of ours.

Counted, per program (P_m = parameters used in matmuls, L layers, N query heads, K KV heads, D head dim,
b_w = compute-dtype bytes of a weight, b_c = bytes of a cache entry):

    decode step, S slots     bytes  = P · b_w                          every weight once (the tied
                                     + 2 · L · K · D · b_c · Σ_s W_s    embedding as the output layer)
                                                                        + keys and values of W_s positions
                                                                        read per slot
                             FLOPs  = 2 · P_m · S + 4 · L · N · D · Σ_s W_s
    prefill, R rows × C      bytes  = P · b_w + 2 · L · K · D · b_c · R · (W + C)   (read the rows' windows,
                                                                                 write the chunk)
                             FLOPs  = 2 · P_m · R · C + 4 · L · N · D · R · C · W
    train step, R rows × T   FLOPs  = R · T · (6 · P_m + 12 · L · N · D · T)   (forward + backward; the
                                                                                 full T × T square)
                             bytes  = 16 · P                     float32 parameters, gradients and two
                                                                 Adam moments, each touched once

W_s is the attention window a slot's query reads from its own cache: the whole own window for today's
decode (every slot attends over all of it and masks the dead positions), or the live length for a decode
that reads only what is live. With shared prompt prefixes (cascade attention, `DecodeState.prefixes`)
the decode also reads the prefix table's P_shared positions once for all slots: bytes add
2 · L · K · D · b_c · P_shared and FLOPs 4 · L · N · D · S · P_shared. The train step's activations are left out of its bytes: it is compute-bound.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rao_jax.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Machine:
  """Measured limits of one device: bytes/s it streams through memory, FLOP/s of a large matmul."""

  bandwidth: float  # bytes / s
  matmul_peak: float  # FLOP / s

  def describe(self) -> str:
    return (f"memory read bandwidth {self.bandwidth / 1e9:.1f} GB/s (a sum over a large array), "
            f"float32 matmul peak {self.matmul_peak / 1e9:.1f} GFLOP/s")


@dataclasses.dataclass(frozen=True)
class Cost:
  """Bytes a program must move and FLOPs it must compute (see the module docstring)."""

  bytes: float
  flops: float

  def floor_s(self, machine: Machine) -> float:
    """The least time the program can take on `machine`."""
    return max(self.bytes / machine.bandwidth, self.flops / machine.matmul_peak)

  def bound(self, machine: Machine) -> str:
    """"memory" or "compute": which limit sets the floor."""
    return "memory" if self.bytes / machine.bandwidth >= self.flops / machine.matmul_peak else "compute"


def _best_seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile and warm up
  best = float("inf")
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - started)
  return best


def measure_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
  """Bytes/s of the best of `repeats` sums of a float32 array of `megabytes`, far larger than any cache:
  each element is read once, as a decode step reads its KV cache (a step's writes are a few rows)."""
  x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
  total = jax.jit(jnp.sum)
  return x.nbytes / _best_seconds(lambda: total(x), repeats)


def measure_matmul_peak(size: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of the best of `repeats` float32 [size, size] @ [size, size] products."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  dot = jax.jit(jnp.dot)
  return 2.0 * size ** 3 / _best_seconds(lambda: dot(a, b), repeats)


def measure_machine(megabytes: int = 256, matmul_size: int = 2048, repeats: int = 5) -> Machine:
  return Machine(bandwidth=measure_bandwidth(megabytes, repeats),
                 matmul_peak=measure_matmul_peak(matmul_size, repeats))


def matmul_params(config: ModelConfig) -> int:
  """Parameters used in matmuls: all but an untied input embedding (a gather, not a matmul)."""
  return config.num_params - (0 if config.tie_embeddings else config.vocab_size * config.hidden_size)


def _kv_bytes_per_position(config: ModelConfig, cache_dtype) -> int:
  """Bytes of one token position's keys and values over all layers."""
  return 2 * config.num_layers * config.num_kv_heads * config.head_dim * jnp.dtype(cache_dtype).itemsize


def _attention_flops_per_position(config: ModelConfig) -> int:
  """FLOPs of one query attending to one key position (scores and values, all layers and heads)."""
  return 4 * config.num_layers * config.num_heads * config.head_dim


def decode_step_cost(config: ModelConfig, windows: Sequence[int] | np.ndarray,
                     cache_dtype=None, shared_positions: int = 0) -> Cost:
  """One decode step of len(windows) slots, slot s reading `windows[s]` positions of its own cache, and
  every slot attending the `shared_positions` of a shared prefix table read once."""
  cache_dtype = cache_dtype or config.dtype
  positions = float(np.sum(windows))
  weight_bytes = config.num_params * jnp.dtype(config.dtype).itemsize
  kv_bytes = _kv_bytes_per_position(config, cache_dtype)
  return Cost(bytes=weight_bytes + kv_bytes * (positions + shared_positions),
              flops=2.0 * matmul_params(config) * len(windows)
              + _attention_flops_per_position(config) * (positions + shared_positions * len(windows)))


def prefill_cost(config: ModelConfig, rows: int, chunk: int, window: int, cache_dtype=None) -> Cost:
  """A prefill of `rows` rows of `chunk` tokens, each attending over a `window`-position cache."""
  cache_dtype = cache_dtype or config.dtype
  weight_bytes = config.num_params * jnp.dtype(config.dtype).itemsize
  return Cost(bytes=weight_bytes + _kv_bytes_per_position(config, cache_dtype) * rows * (window + chunk),
              flops=2.0 * matmul_params(config) * rows * chunk
              + _attention_flops_per_position(config) * rows * chunk * window)


def train_step_cost(config: ModelConfig, rows: int, row_length: int) -> Cost:
  """A training step (forward and backward) on `rows` rows of `row_length` tokens, and one AdamW update."""
  per_token = (6 * matmul_params(config)
               + 3 * _attention_flops_per_position(config) * row_length)
  return Cost(bytes=16.0 * config.num_params, flops=float(per_token) * rows * row_length)
