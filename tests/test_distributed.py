"""The multi-host helpers with one process (the several-process path runs in
tests/train/test_multihost_e2e.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rao_jax import distributed


def test_shard_bounds_cover_the_range_in_near_equal_blocks():
  assert distributed.shard_bounds(8, 3) == [(0, 3), (3, 6), (6, 8)]
  assert distributed.shard_bounds(2, 3) == [(0, 1), (1, 2), (2, 2)]
  for size in range(0, 20):
    for shards in range(1, 6):
      bounds = distributed.shard_bounds(size, shards)
      assert bounds[0][0] == 0 and bounds[-1][1] == size
      assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
      widths = [end - start for start, end in bounds]
      assert max(widths) - min(widths) <= 1
  with pytest.raises(ValueError, match="num_shards"):
    distributed.shard_bounds(4, 0)


def test_one_process_runs_every_shard_and_gathers_are_identities():
  assert list(distributed.local_shards(3)) == [0, 1, 2]
  assert distributed.allgather_objects({"a": [1, 2]}) == [{"a": [1, 2]}]
  assert distributed.is_primary()
  distributed.barrier("nothing to wait for")


def test_initialize_wants_all_three_addresses_or_none():
  with pytest.raises(ValueError, match="all of"):
    distributed.initialize("localhost:1234", None, 0)


def test_global_arrays_put_and_fetch_round_trip():
  mesh = jax.make_mesh((1,), ("data",))
  sharded = NamedSharding(mesh, PartitionSpec("data"))
  value = np.arange(12, dtype=np.float32).reshape(4, 3)
  array = distributed.global_array(value, sharded)
  assert array.sharding == sharded
  np.testing.assert_array_equal(distributed.fetch({"x": array})["x"], value)
  key = jax.random.key(3)
  placed = distributed.put({"k": key, "v": jnp.ones(3)}, {"k": NamedSharding(mesh, PartitionSpec()),
                                                          "v": sharded})
  np.testing.assert_array_equal(jax.random.key_data(placed["k"]), jax.random.key_data(key))
