"""Ahead-of-time compilation of the trainer's device programs, and the memory each one needs per device.

The three programs a RAO run spends its device time in are lowered and compiled here exactly as the
trainer builds them, from abstract shapes only (`jax.ShapeDtypeStruct`s with the run's shardings: no
weight is ever allocated, so a Qwen3-4B program compiles on a laptop):

    train_step  `train_step.make_train_step` as `PolicyUpdater` builds it: the preset's
                `policy_update` (loss, remat, logits / attention chunks, optimiser) on
                [M, rows_per_micro_batch, row_length] packed rows (M = 2 by default: see
                `compile_each`) and P = 1024 node advantages
    prefill     `DeviceProgram.prefill` of the rollout engine into the `DecodeState` of `num_slots` ×
                `context_window`, by default at its largest call (prefill_row_buckets[-1] rows ×
                prefill_chunk_buckets[-1] tokens), or at any (rows, chunk) asked for
    decode      `DeviceProgram.decode` over that state (one compiled `while_loop`)

with the parameters, train state and decode state laid out as the trainer lays them out
(`sharding.tree_shardings`, `decode_state_shardings`; the engine samples from a copy cast to the compute
dtype). The devices can be real ones, simulated CPU devices (`--xla_force_host_platform_device_count` or
`jax_num_cpu_devices`), or the compile-only devices of a TPU topology (`topology_devices`, which needs
`libtpu`: `pip install -e .[tpu-aot]`), so a slice's memory is known before one is rented.

What is measured, per device, from XLA's `compiled.memory_analysis()` of the partitioned program:
arguments, outputs, outputs aliased to donated arguments (counted once), temporaries (activations,
gradients in flight, scores) and generated code. `ProgramMemory.total_bytes` is what the program itself
needs while it runs. Buffers that outlive the programs stay allocated beside them and are added as
`resident_bytes`: the train state (float32 parameters and Adam moments) during rollouts, and the
engine's compute-dtype parameter copy during the train step. `peak_bytes` = total + resident is what
has to fit a chip's HBM (`Topology.hbm_gib`: what libtpu lets a program use). Not counted: the engine's
shared prompt-prefix cache (one row of the KV cache) and fragmentation. On TPU the compiler refuses a
program whose temporaries alone cannot fit; `compile_each` records that as a `CompileFailure` with
XLA's message (a program it accepts can still exceed the chip once its arguments and the resident
buffers are added: compare `peak_bytes`).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rao_jax import sharding as sharding_lib
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.decode_state import DecodeState, decode_state_shardings
from rao_jax.rollout.device import DeviceProgram
from rao_jax.train import packing, train_step as ts
from rao_jax.train.optimizer import make_optimizer
from rao_jax.train.settings import Settings

GiB = 1 << 30
NUM_NODES = 1024  # padded node count P of the train step's advantages (policy_update._MIN_PADDED_NODES)
STOP_SEQUENCE_TOKENS = 4  # width K of the decode's stop sequences (`</python>` is a few tokens)


@dataclasses.dataclass(frozen=True)
class Topology:
  """A TPU slice by its user-facing name, and what `get_topology_desc` needs to describe it.

  `hbm_gib` is the HBM of one chip (one JAX device) that XLA lets a program use: what libtpu's compiler
  reports as "available HBM" when a program does not fit (the documented capacity less a runtime
  reservation).
  """

  name: str
  topology_name: str
  chip_config_name: str
  chips_per_host_bounds: tuple[int, int, int]
  num_chips: int
  hbm_gib: float


# v5p: 2 TensorCores per chip driven as one device ("megacore"), 95 GiB HBM per chip (libtpu 0.0.42:
# 95.74 GiB available); the slice name counts TensorCores, so v5p-8 is 4 chips on one host. v6e
# (Trillium): 1 TensorCore and 32 GB HBM per chip (libtpu: 31.25 GiB available), 8 chips per host;
# v6e-8 is 8 chips. https://cloud.google.com/tpu/docs/v5p, https://cloud.google.com/tpu/docs/v6e.
TOPOLOGIES: dict[str, Topology] = {
    "v5p-8": Topology("v5p-8", "v5:2x2x1", "megacore", (2, 2, 1), 4, 95.74),
    "v5p-16": Topology("v5p-16", "v5:2x2x2", "megacore", (2, 2, 1), 8, 95.74),
    "v6e-4": Topology("v6e-4", "v6e:2x2", "default", (2, 2, 1), 4, 31.25),
    "v6e-8": Topology("v6e-8", "v6e:2x4", "default", (2, 4, 1), 8, 31.25),
}


def libtpu_available() -> bool:
  """Whether the `libtpu` package (the TPU compiler) is importable."""
  return importlib.util.find_spec("libtpu") is not None


def topology_devices(name: str) -> list[jax.Device]:
  """The compile-only devices of TPU slice `name` (a key of `TOPOLOGIES`); nothing runs on them.

  Raises KeyError for an unknown name and RuntimeError when `libtpu` is not installed.
  """
  if name not in TOPOLOGIES:
    raise KeyError(f"unknown TPU topology {name!r}; known: {sorted(TOPOLOGIES)}")
  if not libtpu_available():
    raise RuntimeError("compiling for a TPU topology needs libtpu: pip install -e '.[tpu-aot]'")
  from jax.experimental import topologies  # noqa: PLC0415  (loads the TPU plugin: only when asked)
  spec = TOPOLOGIES[name]
  devices = topologies.get_topology_desc(
      topology_name=spec.topology_name, platform="tpu", chip_config_name=spec.chip_config_name,
      chips_per_host_bounds=spec.chips_per_host_bounds, num_slices=1, wrap=(False, False, False)).devices
  if len(devices) != spec.num_chips:
    raise RuntimeError(f"{name}: libtpu describes {len(devices)} devices, expected {spec.num_chips}")
  return list(devices)


def build_mesh(devices: Sequence[jax.Device], shape: Sequence[int]) -> Mesh:
  """The ("data", "fsdp", "tensor") mesh over `devices` of `shape` = (data, fsdp, tensor) sizes (one may
  be -1; a run's own is `settings.mesh.sizes`). ValueError if the sizes do not multiply to the number of
  devices."""
  if len(shape) != 3:
    raise ValueError(f"a mesh shape is (data, fsdp, tensor), got {tuple(shape)}")
  data, fsdp, tensor = shape
  return sharding_lib.make_mesh(data, fsdp, tensor, devices=devices)


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
  """Per-device bytes of one compiled program (`compiled.memory_analysis()`) and its compile time."""

  program: str
  shape: str               # the compiled shapes, for the reader
  argument_bytes: int
  output_bytes: int
  alias_bytes: int         # outputs that reuse donated argument buffers (counted once in the total)
  temp_bytes: int
  code_bytes: int
  resident_bytes: int      # buffers of the other half of the loop that stay allocated meanwhile
  compile_s: float

  @property
  def total_bytes(self) -> int:
    """What the program needs while it runs: arguments + outputs − aliased + temporaries + code."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

  @property
  def peak_bytes(self) -> int:
    """`total_bytes` plus the buffers that stay allocated beside the program."""
    return self.total_bytes + self.resident_bytes


@dataclasses.dataclass(frozen=True)
class CompileFailure:
  """A program that did not compile (on TPU: usually "ran out of memory in memory space hbm")."""

  program: str
  shape: str
  error: str
  compile_s: float


def per_device_bytes(tree: Any, shardings: Any) -> int:
  """Bytes one device holds of `tree` (arrays or `ShapeDtypeStruct`s) laid out by `shardings` (a tree of
  the same structure, as `sharding.tree_shardings` returns); the largest shard when they differ."""
  total = 0
  for leaf, leaf_sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
    total += int(np.prod(leaf_sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
  return total


def abstract_policy(settings: Settings) -> tuple[nnx.GraphDef, nnx.State]:
  """The policy's graph and abstract float parameters (`ShapeDtypeStruct`s), as `nnx.split` gives them."""
  return nnx.split(nnx.eval_shape(lambda: Transformer(settings.model, rngs=nnx.Rngs(0))))


def _with_shardings(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _replicated(mesh: Mesh, shape: Sequence[int], dtype: Any) -> jax.ShapeDtypeStruct:
  """A host input of the programs: uncommitted at run time, so jit places it whole on every device."""
  return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=NamedSharding(mesh, PartitionSpec()))


def _rows_split(mesh: Mesh, shape: Sequence[int], dtype: Any) -> jax.ShapeDtypeStruct:
  """A host input whose first (row) dimension is split over the data axes where they divide it."""
  spec = sharding_lib.divisible_spec(shape, PartitionSpec(sharding_lib.BATCH_AXES), mesh)
  return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=NamedSharding(mesh, spec))


@dataclasses.dataclass(frozen=True)
class _Lowering:
  program: str
  shape: str
  lower: Any               # () -> jax.stages.Lowered
  resident_bytes: int


def _train_step_lowering(settings: Settings, mesh: Mesh, graphdef: nnx.GraphDef, params: nnx.State,
                         num_micro_batches: int, vocab_limit: int | None, resident_bytes: int) -> _Lowering:
  """`PolicyUpdater._compiled_step(num_micro_batches)` on the abstract train state."""
  update = settings.policy_update
  tx = make_optimizer(update.optimizer)
  state = jax.eval_shape(lambda p: ts.initial_train_state(p, tx), params)
  config = dataclasses.replace(update.train_step, vocab_limit=vocab_limit, num_micro_batches=num_micro_batches)
  step = ts.make_train_step(graphdef, state, tx, config, mesh)
  rows, length = update.rows_per_micro_batch, update.row_length
  parallel = sharding_lib.data_parallel_size(mesh)
  if rows % parallel:
    raise ValueError(f"--config.policy_update.rows_per_micro_batch={rows} does not split over the mesh's "
                     f"data x fsdp = {parallel} devices")
  field = lambda dtype: jax.ShapeDtypeStruct((num_micro_batches, rows, length), jnp.dtype(dtype))
  batch = packing.PackedBatch(tokens=field(jnp.int32), positions=field(jnp.int32),
                              segment_ids=field(jnp.int32), loss_mask=field(bool),
                              old_log_probs=field(jnp.float32), node_index=field(jnp.int32))
  nodes = (jax.ShapeDtypeStruct((NUM_NODES,), jnp.float32), jax.ShapeDtypeStruct((NUM_NODES,), bool))
  c = update.train_step
  shape = (f"{num_micro_batches} x {rows} rows x {length}; remat {'on' if c.remat else 'off'}, logits chunk "
           f"{c.logits_chunk_size or 'off'}, attention chunk {c.attention_chunk_size or 'off'}")
  return _Lowering("train_step", shape, lambda: step.jitted.lower(state, batch, *nodes), resident_bytes)


def _rollout_lowerings(settings: Settings, mesh: Mesh, graphdef: nnx.GraphDef, params: nnx.State,
                       prefill_shapes: Sequence[tuple[int, int]], prefill_rows_split: bool,
                       vocab_limit: int | None, resident_bytes: int) -> list[_Lowering]:
  """The engine's prefill and decode (`RolloutEngine._program` / `_prefill_call` / `_decode_and_route`)."""
  rollout = settings.rollout
  slots, window, width = rollout.num_slots, rollout.context_window, rollout.completion_limit
  state = jax.eval_shape(lambda: DecodeState.init(settings.model, slots, window, width, jax.random.key(0)))
  state_shardings = decode_state_shardings(state, mesh)
  state = _with_shardings(state, state_shardings)
  program = DeviceProgram(graphdef, rollout.sampling, vocab_limit, state_shardings,
                          rollout.prefill_attention_chunk_size)
  i32 = jnp.int32
  cache = f"{slots} slots x {window}"
  attention = rollout.prefill_attention_chunk_size or "off"

  row_input = _rows_split if prefill_rows_split else _replicated
  layout = "; rows split over data axes" if prefill_rows_split else ""

  def prefill_lowering(rows: int, chunk: int) -> _Lowering:
    args = (row_input(mesh, (rows,), i32), row_input(mesh, (rows, chunk), i32),
            row_input(mesh, (rows,), i32), row_input(mesh, (rows,), bool), row_input(mesh, (rows,), i32),
            row_input(mesh, (rows, width), i32), row_input(mesh, (rows,), i32))
    return _Lowering("prefill", f"{rows} rows x {chunk} into {cache}; attention chunk {attention}{layout}",
                     lambda: program.prefill.lower(params, state, *args), resident_bytes)

  decode_args = (_replicated(mesh, (1, STOP_SEQUENCE_TOKENS), i32), _replicated(mesh, (), i32),
                 _replicated(mesh, (), i32))
  return [*(prefill_lowering(rows, chunk) for rows, chunk in prefill_shapes),
          _Lowering("decode", cache, lambda: program.decode.lower(params, state, *decode_args), resident_bytes)]


def compile_programs(settings: Settings, mesh: Mesh, **options: Any) -> list[ProgramMemory | CompileFailure]:
  """`compile_each` as a list: one record per program."""
  return list(compile_each(settings, mesh, **options))


def compile_each(settings: Settings, mesh: Mesh, *, num_micro_batches: int = 2,
                 prefill_shapes: Sequence[tuple[int, int]] | None = None, prefill_rows_split: bool = False,
                 vocab_limit: int | None = None,
                 programs: Sequence[str] = ("train_step", "prefill", "decode"),
                 ) -> Iterator[ProgramMemory | CompileFailure]:
  """Lowers and compiles `programs` of the run `settings` describes on `mesh`, yielding one record each
  as it compiles (train step, prefills, decode).

  Args:
    num_micro_batches: M, the train step's gradient-accumulation steps (a batch's row count is
      M × rows_per_micro_batch; the trees decide M at run time). Every M >= 2 needs the same
      temporaries (the scan runs one micro-batch at a time; more of them only add their rows, 21 bytes a
      token, to the arguments), but M = 1 needs less: XLA drops the one-iteration loop and with it the
      float32 gradient accumulator and the loop's copies (14 GiB less per chip for qwen3_4b on v5p-8 at
      (1, 1, 4), docs/tpu_memory.md). The default 2 bounds every batch.
    prefill_shapes: (rows, chunk) of each prefill to compile; default the largest row bucket × the
      largest chunk bucket, the engine's largest call.
    prefill_rows_split: False (the engine today): the prefill's host inputs are replicated, so every
      device computes every row. True: an alternative layout the engine could adopt (inputs split by
      row over the data axes, `sharding.batch_sharding`), compiled to compare.
    vocab_limit: the tokenizer's size when the model's vocabulary is padded (the trainer passes it);
      None masks nothing.

  A program XLA refuses (on TPU: one that cannot fit in HBM) comes back as a `CompileFailure`; a mesh
  that the preset's rows or slots do not split over raises ValueError before anything compiles.
  """
  unknown = sorted(set(programs) - {"train_step", "prefill", "decode"})
  if unknown:
    raise ValueError(f"unknown programs {unknown}")
  graphdef, params = abstract_policy(settings)
  tx = make_optimizer(settings.policy_update.optimizer)
  train_state = jax.eval_shape(lambda p: ts.initial_train_state(p, tx), params)
  train_state_bytes = per_device_bytes(train_state, sharding_lib.tree_shardings(train_state, mesh))
  # The engine's copy of the parameters (`RolloutEngine.set_params`): floats cast to the compute dtype.
  compute = settings.model.compute_dtype
  cast = lambda p: p.astype(compute) if jnp.issubdtype(p.dtype, jnp.floating) else p
  engine_params = jax.eval_shape(lambda p: jax.tree.map(cast, p), params)
  engine_shardings = sharding_lib.tree_shardings(engine_params, mesh)
  engine_params_bytes = per_device_bytes(engine_params, engine_shardings)

  lowerings = []
  if "train_step" in programs:
    lowerings.append(_train_step_lowering(settings, mesh, graphdef, params, num_micro_batches, vocab_limit,
                                          resident_bytes=engine_params_bytes))
  if {"prefill", "decode"} & set(programs):
    rollout = settings.rollout
    shapes = prefill_shapes or [(rollout.prefill_row_buckets[-1], rollout.prefill_chunk_buckets[-1])]
    lowerings += [lowering for lowering in _rollout_lowerings(
        settings, mesh, graphdef, _with_shardings(engine_params, engine_shardings), shapes, prefill_rows_split,
        vocab_limit, resident_bytes=train_state_bytes) if lowering.program in programs]
  for lowering in lowerings:
    yield _compile(lowering)


def _compile(lowering: _Lowering) -> ProgramMemory | CompileFailure:
  started = time.perf_counter()
  try:
    compiled = lowering.lower().compile()
  except Exception as error:  # noqa: BLE001  (XLA's compile errors are runtime errors of several types)
    if "memory" not in str(error).lower() and "resource_exhausted" not in str(error).lower():
      raise
    return CompileFailure(lowering.program, lowering.shape, f"{type(error).__name__}: {error}",
                          time.perf_counter() - started)
  seconds = time.perf_counter() - started
  stats = compiled.memory_analysis()
  return ProgramMemory(program=lowering.program, shape=lowering.shape,
                       argument_bytes=int(stats.argument_size_in_bytes),
                       output_bytes=int(stats.output_size_in_bytes),
                       alias_bytes=int(stats.alias_size_in_bytes), temp_bytes=int(stats.temp_size_in_bytes),
                       code_bytes=int(stats.generated_code_size_in_bytes),
                       resident_bytes=lowering.resident_bytes, compile_s=seconds)
