"""Multi-process (multi-host) helpers: start-up, host data in and out of global arrays, and host gathers.

In a multi-host run (a TPU pod slice: one process per host) every process runs the same program:
the device programs are global `jax.jit` functions over a mesh of all devices, and each process drives
them with the same host arrays. The rollout engine splits its work by process (each one schedules its
own share of the trees and slots and runs their cells), so the host state that the device programs
need from the others (prefill plans, finished slots, the trees) is exchanged with `allgather_objects`.

With one process every helper here is the identity or a plain fetch, so the same code runs unchanged
on a laptop.
"""
from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Sharding


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts `jax.distributed` (before any other JAX call).

  On Cloud TPU the three arguments are found by JAX itself (leave them None). Elsewhere (several
  processes on one machine, for tests) pass all three; CPU devices then use gloo collectives.
  """
  given = [coordinator_address is None, num_processes is None, process_id is None]
  if any(given) and not all(given):
    raise ValueError("give all of coordinator_address, num_processes and process_id, or none")
  if coordinator_address is not None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def is_primary() -> bool:
  """Whether this process writes the run's files (logs, trees, reports): process 0."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (nothing with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def allgather_objects(local: Any) -> list[Any]:
  """Every process's `local` (picklable host data), in process order; `[local]` with one process.

  Used for small host state (plans, slot lists, finished trees). The objects are pickled: only call
  it with data this program made itself.
  """
  if jax.process_count() == 1:
    return [local]
  payload = np.frombuffer(pickle.dumps(local, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
  sizes = multihost_utils.process_allgather(np.asarray([payload.size], np.int64))
  padded = np.zeros((int(np.max(sizes)),), np.uint8)
  padded[:payload.size] = payload
  gathered = np.asarray(multihost_utils.process_allgather(padded))  # [P, max size]
  return [pickle.loads(gathered[p, :int(sizes[p][0])].tobytes()) for p in range(len(gathered))]


def global_array(value: np.ndarray, sharding: Sharding) -> jax.Array:
  """A global array with `sharding` from `value`, the whole array, identical on every process.

  Each process places the pieces its own devices hold; with one process this is `jax.device_put`.
  """
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def put(tree: Any, shardings: Any) -> Any:
  """`jax.device_put(tree, shardings)` that also works with several processes.

  There, a value held by this process alone (a numpy array, or a jax.Array on a local device, such as
  a freshly initialised model or a PRNG key) must be the same on every process; each process then
  places the pieces its devices hold. Arrays that are already global are resharded as usual.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)

  def one(x: Any, sharding: Sharding) -> jax.Array:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = global_array(np.asarray(jax.random.key_data(x)), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return global_array(np.asarray(x), sharding)

  return jax.tree.map(one, tree, shardings)


def fetch(tree: Any) -> Any:
  """The whole value of every array in `tree` on this host, as numpy, on every process.

  An array split over several processes' devices is gathered across processes; with one process this
  is `jax.device_get`.
  """
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(one, tree)


def shard_bounds(size: int, num_shards: int) -> list[tuple[int, int]]:
  """[start, end) of `num_shards` contiguous, near-equal blocks of range(size) (earlier ones larger)."""
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  base, extra = divmod(size, num_shards)
  bounds, start = [], 0
  for shard in range(num_shards):
    end = start + base + (shard < extra)
    bounds.append((start, end))
    start = end
  return bounds


def local_shards(num_shards: int) -> Sequence[int]:
  """The host shards this process runs: a contiguous block of `num_shards` (a multiple of the
  process count)."""
  processes = jax.process_count()
  if num_shards % processes:
    raise ValueError(f"{num_shards} host shards do not split over {processes} processes")
  per_process = num_shards // processes
  first = jax.process_index() * per_process
  return range(first, first + per_process)
