"""The mesh builder and the logical-axis rules (multi-device behaviour: test_train_sharded.py)."""
import jax
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, AxisType, PartitionSpec

from rao_jax import sharding
from rao_jax.model.config import get_preset
from rao_jax.model.kv_cache import CACHE_LOGICAL_AXES
from rao_jax.model.transformer import Transformer


def test_make_mesh_names_axes_and_fills_the_free_size():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == sharding.MESH_AXES
  assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}
  assert all(t == AxisType.Auto for t in mesh.axis_types)
  with pytest.raises(ValueError, match="need"):
    sharding.make_mesh(data=2, fsdp=1, tensor=jax.device_count())
  with pytest.raises(ValueError, match="at most one -1"):
    sharding.make_mesh(data=-1, fsdp=-1)


def test_every_logical_axis_of_the_model_and_cache_has_a_rule():
  abstract = nnx.state(nnx.eval_shape(lambda: Transformer(get_preset("tiny"), rngs=nnx.Rngs(0))))
  names = {name for v in jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nnx.Variable))
           for name in v.get_metadata()["out_sharding"]}
  assert names | set(CACHE_LOGICAL_AXES) <= set(sharding.LOGICAL_AXIS_RULES)
  assert sharding.logical_to_mesh_spec(("embed", "mlp")) == PartitionSpec("fsdp", "tensor")
  assert sharding.logical_to_mesh_spec(("cache_batch", None)) == PartitionSpec(("data", "fsdp"), None)
  with pytest.raises(ValueError, match="no sharding rule"):
    sharding.logical_to_mesh_spec(("experts",))


def test_dimensions_the_mesh_does_not_divide_stay_replicated():
  mesh = AbstractMesh((2, 2, 4), sharding.MESH_AXES)
  spec = PartitionSpec("fsdp", "tensor", None)
  assert sharding.divisible_spec((8, 2, 64), spec, mesh) == PartitionSpec("fsdp", None, None)  # 2 KV heads
  assert sharding.divisible_spec((8, 8, 64), spec, mesh) == spec
  assert sharding.divisible_spec((6,), PartitionSpec(("data", "fsdp")), mesh) == PartitionSpec(None)
