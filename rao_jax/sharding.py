"""The device mesh and the one table that maps logical array axes to mesh axes.

Parameters carry logical axis names (`out_sharding` metadata, e.g. ("vocab", "embed")); the KV cache
and batches use names too ("cache_batch", "batch", ...). `LOGICAL_AXIS_RULES` decides, in one place,
which mesh axis each name is split over: batch-like axes over ("data", "fsdp") (data parallelism, with
the fsdp replicas also holding a slice of every parameter), the hidden ("embed") axis over "fsdp"
(ZeRO-3 style parameter sharding), and heads / MLP / vocabulary over "tensor" (Megatron-style).

The mesh's axes are `AxisType.Auto`: the train step and the rollout programs are `jax.jit` functions with
explicit in/out shardings, and XLA's sharding propagation (GSPMD) places everything in between. Explicit
axes would make sharding part of every array's type and require annotating each einsum of the model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from rao_jax.errors import FieldError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis name -> mesh axis (or axes), None = replicated. Every logical name the model, the KV cache
# and the batches use must be listed: an unknown name raises instead of silently replicating.
LOGICAL_AXIS_RULES: Mapping[str, str | tuple[str, ...] | None] = {
    # Parameters (rao_jax/model/layers.py, attention.py).
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "norm": None,
    # KV cache (rao_jax/model/kv_cache.py: CACHE_LOGICAL_AXES).
    "cache_batch": BATCH_AXES,
    "cache_sequence": None,
    # Batches: packed training rows and decode slots.
    "batch": BATCH_AXES,
    "length": None,
}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Sizes of the ("data", "fsdp", "tensor") mesh a run trains and samples on; one may be -1 (the rest).

  The default puts every device on "data": each chip holds the whole train state, which suits models
  that fit one chip. Larger ones split it: "tensor" over the chips of one host (heads, MLP and
  vocabulary, and the KV cache by KV head), "data" across hosts. `docs/tpu_memory.md` has the
  compiled memory of each choice for the qwen3_4b presets.
  """

  data: int = -1
  fsdp: int = 1
  tensor: int = 1

  def __post_init__(self):
    sizes = {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}
    for name, size in sizes.items():
      if size == 0 or size < -1:
        raise FieldError(name, size, "must be a positive mesh size or -1 (the devices left over)")
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1:
      raise FieldError(free[1], -1, f"must be a size: only one of data, fsdp, tensor may be -1, "
                                     f"and {free[0]} already is")

  @property
  def sizes(self) -> tuple[int, int, int]:
    return self.data, self.fsdp, self.tensor

  def build(self, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh over `devices` (default: every device of every process); ValueError if they do not
    split into these sizes."""
    return make_mesh(*self.sizes, devices=devices)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh over `devices` (default: all); one size may be -1 (the rest).

  Raises ValueError if the sizes do not multiply to the number of devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = [data, fsdp, tensor]
  if sum(s == -1 for s in sizes) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh sizes (data, fsdp, tensor)={tuple(sizes)} must be positive, at most one -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"{len(devices)} devices cannot be split into mesh sizes {tuple(sizes)}")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"mesh sizes (data, fsdp, tensor)={tuple(sizes)} need {int(np.prod(sizes))} devices, "
                     f"have {len(devices)}")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def logical_to_mesh_spec(logical_axes: Sequence[str | None],
                         rules: Mapping[str, Any] = LOGICAL_AXIS_RULES) -> PartitionSpec:
  """PartitionSpec of an array whose dimensions have these logical names (None = replicated dim)."""
  spec = []
  for name in logical_axes:
    if name is None:
      spec.append(None)
    elif name not in rules:
      raise ValueError(f"logical axis {name!r} has no sharding rule; known: {sorted(rules)}")
    else:
      spec.append(rules[name])
  return PartitionSpec(*spec)


def divisible_spec(shape: Sequence[int], spec: PartitionSpec, mesh: Mesh) -> PartitionSpec:
  """`spec` with every dimension that its mesh axes do not divide evenly left replicated."""
  fitted = []
  for size, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    ways = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    fitted.append(axes if size % ways == 0 else None)
  return PartitionSpec(*fitted)


def tree_shardings(tree: Any, mesh: Mesh, rules: Mapping[str, Any] = LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings for an NNX state (or any pytree holding `nnx.Variable`s, e.g. an optax state of one).

  A Variable with `out_sharding` logical names gets the mapped spec (a dimension the mesh axes do not
  divide, e.g. 2 KV heads over 4-way tensor parallelism, stays replicated); every other leaf (step
  counters, scalars) is replicated. The result has the structure of `tree`, as `jax.jit` and
  `jax.device_put` expect.
  """
  replicated = NamedSharding(mesh, PartitionSpec())

  def sharding_of(leaf):
    if isinstance(leaf, nnx.Variable):
      logical = leaf.get_metadata().get("out_sharding")
      shape = tuple(leaf.get_value().shape)
      if not logical:
        return leaf.replace(replicated)
      return leaf.replace(NamedSharding(mesh, divisible_spec(shape, logical_to_mesh_spec(logical, rules), mesh)))
    return replicated

  return jax.tree.map(sharding_of, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, ndim: int, batch_dim: int = 0) -> NamedSharding:
  """Sharding of a batch array: dimension `batch_dim` over ("data", "fsdp"), the rest replicated."""
  spec = [None] * ndim
  spec[batch_dim] = BATCH_AXES
  return NamedSharding(mesh, PartitionSpec(*spec))


def data_parallel_size(mesh: Mesh) -> int:
  """How many ways a batch dimension is split (the product of the "data" and "fsdp" axis sizes)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def shard_model_state(state: nnx.State, mesh: Mesh,
                      rules: Mapping[str, Any] = LOGICAL_AXIS_RULES) -> nnx.State:
  """`state` (from `nnx.split(model)`) placed on `mesh` according to its logical axes."""
  return jax.device_put(state, tree_shardings(state, mesh, rules))
