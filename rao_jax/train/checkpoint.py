"""Training checkpoints: Orbax `CheckpointManager` over the train state and the loop's position.

A checkpoint at step N (N RAO steps done: N training batches, skipped ones included) holds two items:
  state:    the `TrainState` pytree (params, optimiser state, train-step count), saved sharded and async;
  progress: JSON with the step, the data position (root tasks consumed), the base PRNG key's data, the
            run's identity (the model config and the tokenizer fingerprint), and its integrity record:
            each array's name, shape, dtype and checksum, plus a sha256 of the record itself.

Restoring verifies before it trusts. The progress record must match its own sha256 and be consistent
(its step is the directory's, its data position is >= 0, its key has the shape of this JAX's default
key); the run's identity and the arrays' names, shapes and dtypes must match the current run before any
array is read; and every restored array must match the checksum written when it was saved. Orbax alone
restores a flipped bit in the array data silently, with wrong values (its chunks carry no checksum).

Two kinds of failure are kept apart. An *incompatible* checkpoint (another model, tokenizer or train-state
structure) raises `CheckpointIncompatibleError` at once: an older checkpoint of the same run would not
do better, and the user's config is what must change. A *damaged* one (unreadable, failing a checksum,
or an inconsistent record) raises `CheckpointDamagedError`; `Checkpoints.restore` of the latest step then
falls back to the newest older checkpoint that verifies, with a warning naming what failed, and moves the
damaged step directories aside, into `<directory>/damaged/`, where they are kept (never deleted) and no
later save collides with them. If no checkpoint verifies, nothing is moved and a `CheckpointError` lists
what failed in each.

The array checksum is two 32-bit sums of each array's bits, read as 32-bit words (narrower elements
widened, wider ones split): the plain sum and the sum weighted by 2·i + 1 at word i, both mod 2^32. It
catches every single flipped bit and any other damage but with probability about 2^-32 or less; it is
not a cryptographic hash (the threat is bit rot and torn writes, not an adversary). It is computed by one
jitted pass over the arrays where they live, sharded or not, so saving a large model does not copy its
state to the host to hash it.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed while
saving leaves the previous checkpoint as the latest one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from rao_jax import distributed
from rao_jax import tokenizer as tokenizer_lib
from rao_jax.train.train_step import TrainState

RECORD_FORMAT = 2  # progress records with an integrity record (format 1 had none)
DAMAGED_DIRECTORY = "damaged"  # under a checkpoint directory: damaged steps, kept for inspection
_RECORD_FIELDS = ("format", "step", "data_position", "rng_key_data", "model_config", "tokenizer_fingerprint",
                  "arrays", "record_sha256")
# Format 1 (written before checkpoints carried checksums) has none of these; such a checkpoint is still
# restored, with a warning that its arrays cannot be verified, so that older runs can resume.
_INTEGRITY_FIELDS = ("format", "arrays", "record_sha256")


def is_unverifiable(record: Mapping[str, Any]) -> bool:
  """True for a format-1 record: no integrity fields at all (not one that lost some of them)."""
  return all(field not in record for field in _INTEGRITY_FIELDS)


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used: corrupt, unreadable, or from an incompatible run."""


class CheckpointDamagedError(CheckpointError):
  """A checkpoint whose files are unreadable, fail their checksums, or hold an inconsistent record."""


class CheckpointIncompatibleError(CheckpointError):
  """A sound checkpoint written by another run: another model, tokenizer or train-state structure."""


def tokenizer_fingerprint(tokenizer: tokenizer_lib.Tokenizer) -> str:
  """sha256 of the tokenizer's model file (SentencePiece) or tokenizer.json (Hugging Face)."""
  path = getattr(tokenizer, "model_file", None)
  if path is None:
    directory = getattr(tokenizer, "path", "")
    path = os.path.join(directory, "tokenizer.json") if os.path.isdir(directory) else directory
  if not path or not os.path.isfile(path):
    raise ValueError(f"cannot fingerprint tokenizer {type(tokenizer).__name__}: no model file found")
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass(frozen=True)
class RunIdentity:
  """What a checkpoint must agree with to be resumed: the model's shape and the tokenizer's ids."""

  model_config: Mapping[str, Any]
  tokenizer_fingerprint: str

  def mismatches(self, saved: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between this run and a checkpoint's saved identity."""
    problems = []
    saved_model = saved.get("model_config", {})
    ours = json.loads(json.dumps(dict(self.model_config)))  # as saved: JSON has lists, not tuples
    for key in sorted(set(ours) | set(saved_model)):
      if ours.get(key) != saved_model.get(key):
        problems.append(f"model.{key}: checkpoint has {saved_model.get(key)!r}, this run has "
                        f"{self.model_config.get(key)!r}")
    if saved.get("tokenizer_fingerprint") != self.tokenizer_fingerprint:
      problems.append(f"tokenizer: checkpoint fingerprint {str(saved.get('tokenizer_fingerprint'))[:12]}… "
                      f"differs from this run's {self.tokenizer_fingerprint[:12]}…")
    return problems


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where the loop stands after `step` RAO steps (batches consumed, skipped ones included)."""

  step: int
  data_position: int        # root tasks consumed from the training stream
  rng_key_data: np.ndarray  # [2] uint32 (threefry) key data of the run's base key


# ---------------------------------------------------------------------------------------------- integrity


def _leaf_name(path: Sequence[Any]) -> str:
  """A pytree key path as "a/b/0/c", the same for an attribute and a dict key of that name (so the
  parameters of a saved TrainState and of a restore target {"params": ...} share their names)."""
  parts = []
  for key in path:
    for attribute in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey / FlattenedIndexKey
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _words(x: jax.Array) -> jax.Array:
  """The bits of `x` as uint32 words, shaped like `x` (an extra trailing axis of 2 for 8-byte elements)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}.get(x.dtype.itemsize)
  if unsigned is None:
    raise TypeError(f"cannot checksum arrays of dtype {x.dtype}")
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _checksum(x: jax.Array) -> jax.Array:
  """[2] uint32: the sum of `x`'s words and their sum weighted by 2·i + 1 (i: row-major word index).

  The index is built from iotas over the array's own shape rather than by flattening it, so a sharded
  array is reduced where it lies (a flatten could move its shards).
  """
  words = _words(x)
  index = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(words.ndim)):
    index += jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(stride % (1 << 32))
    stride *= words.shape[axis]
  return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * (2 * index + 1), dtype=jnp.uint32)])


@jax.jit
def _checksums(leaves: list[jax.Array]) -> list[jax.Array]:
  return [_checksum(x) for x in leaves]


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
  """(leaf name, leaf) for every leaf of `tree`; ValueError if two leaves share a name."""
  named = [(_leaf_name(path), x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]]
  if len({name for name, _ in named}) != len(named):
    raise ValueError("two leaves of the train state have the same name; their checksums would collide")
  return named


def array_checksums(tree: Any) -> dict[str, str]:
  """Leaf name -> 16 hex digits of its checksum, for every array of `tree` (one jitted pass)."""
  named = _named_leaves(tree)
  sums = distributed.fetch(_checksums([jnp.asarray(x) for _, x in named]))
  return {name: f"{int(s[0]):08x}{int(s[1]):08x}" for (name, _), s in zip(named, sums)}


def _array_layout(tree: Any) -> dict[str, dict[str, Any]]:
  """Leaf name -> {"shape", "dtype"} of every array (or jax.ShapeDtypeStruct) of `tree`."""
  return {name: {"shape": [int(d) for d in x.shape], "dtype": str(x.dtype)} for name, x in _named_leaves(tree)}


def array_manifest(tree: Any) -> dict[str, dict[str, Any]]:
  """Leaf name -> {"shape", "dtype", "checksum"}: what a checkpoint records to verify its arrays."""
  checksums = array_checksums(tree)
  return {name: {**layout, "checksum": checksums[name]} for name, layout in _array_layout(tree).items()}


def record_digest(record: Mapping[str, Any]) -> str:
  """sha256 of a progress record's canonical JSON, its own `record_sha256` field left out."""
  body = {k: v for k, v in record.items() if k != "record_sha256"}
  return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _default_key_data_shape() -> tuple[int, ...]:
  """The key-data shape of this JAX's default PRNG implementation (threefry: (2,))."""
  return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def record_problems(record: Any, step: int) -> list[str]:
  """Why the progress record read from step directory `step` cannot be trusted (empty: it can)."""
  if not isinstance(record, dict):
    return [f"it is a {type(record).__name__}, not a JSON object"]
  legacy = is_unverifiable(record)
  missing = [field for field in _RECORD_FIELDS
             if field not in record and not (legacy and field in _INTEGRITY_FIELDS)]
  if missing:
    return [f"it lacks {missing}" + (" (written before checkpoints carried checksums)"
                                     if "record_sha256" in missing else "")]
  if not legacy and record["record_sha256"] != record_digest(record):
    return ["its contents do not match its sha256 (the record was altered or damaged)"]
  problems = []
  if not legacy and record["format"] != RECORD_FORMAT:
    problems.append(f"format {record['format']!r} is not {RECORD_FORMAT}")
  if not _is_int(record["step"]) or record["step"] != step:
    problems.append(f"step {record['step']!r} is not the directory's step {step}")
  if not _is_int(record["data_position"]) or record["data_position"] < 0:
    problems.append(f"data_position {record['data_position']!r} is not an integer >= 0")
  key = record["rng_key_data"]
  key_shape = _default_key_data_shape()
  if (not isinstance(key, list) or len(key) != int(np.prod(key_shape))
      or not all(_is_int(v) and 0 <= v < 1 << 32 for v in key)):
    problems.append(f"rng_key_data {key!r} is not {int(np.prod(key_shape))} uint32 values")
  if not isinstance(record["model_config"], dict):
    problems.append("model_config is not a JSON object")
  if not isinstance(record["tokenizer_fingerprint"], str):
    problems.append("tokenizer_fingerprint is not a string")
  arrays = record.get("arrays", {})
  if not isinstance(arrays, dict) or not all(
      isinstance(a, dict) and {"shape", "dtype", "checksum"} <= set(a) for a in arrays.values()):
    problems.append("arrays is not a map of leaf name to shape, dtype and checksum")
  return problems


def layout_mismatches(saved: Mapping[str, Mapping[str, Any]], target: Mapping[str, Mapping[str, Any]],
                      *, partial: bool = False) -> list[str]:
  """Differences between the saved arrays' names, shapes and dtypes and a restore target's (`partial`:
  the target may be a subset of the saved arrays)."""
  problems = []
  for name in sorted(set(saved) | set(target)):
    if name not in target:
      if not partial:
        problems.append(f"{name}: in the checkpoint, not in this run's train state")
    elif name not in saved:
      problems.append(f"{name}: in this run's train state, not in the checkpoint")
    elif (list(saved[name]["shape"]), saved[name]["dtype"]) != (target[name]["shape"], target[name]["dtype"]):
      problems.append(f"{name}: checkpoint has {saved[name]['dtype']}{list(saved[name]['shape'])}, this run "
                      f"has {target[name]['dtype']}{target[name]['shape']}")
  return problems


def checksum_mismatches(saved: Mapping[str, Mapping[str, Any]], restored: Any) -> list[str]:
  """The names of `restored`'s arrays whose checksum differs from the one recorded at save time."""
  return [name for name, checksum in array_checksums(restored).items() if saved[name]["checksum"] != checksum]


def _abbreviate(items: Sequence[str], limit: int = 5) -> str:
  shown = ", ".join(items[:limit])
  return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------- one step


def _read_record(manager: ocp.CheckpointManager, where: str, step: int) -> dict[str, Any]:
  """The verified progress record of `step`; CheckpointDamagedError if it is unreadable or inconsistent."""
  try:
    record = manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))["progress"]
  except Exception as e:  # Orbax raises many types for missing or damaged files.
    raise CheckpointDamagedError(f"{where} is corrupt or unreadable (its progress record): {e}") from e
  problems = record_problems(record, step)
  if problems:
    raise CheckpointDamagedError(f"{where} is corrupt: its progress record is inconsistent: "
                                 + "; ".join(problems))
  if is_unverifiable(record):
    logging.warning("%s was written before checkpoints carried checksums: restoring it without "
                    "verifying its arrays", where)
  return record


def _restore_arrays(manager: ocp.CheckpointManager, where: str, step: int, record: Mapping[str, Any],
                    target: Any, *, partial: bool = False) -> Any:
  """`target`'s arrays from `step`, verified against `record`'s manifest.

  Raises CheckpointIncompatibleError if the target's names, shapes or dtypes differ from the saved ones,
  CheckpointDamagedError if Orbax cannot read the arrays or one fails its checksum.
  """
  verifiable = not is_unverifiable(record)
  problems = layout_mismatches(record["arrays"], _array_layout(target), partial=partial) if verifiable else []
  if problems:
    raise CheckpointIncompatibleError(f"{where} holds another train state structure than this run's:\n  "
                                      + "\n  ".join(problems[:20]))
  if partial:
    args = ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                  restore_args=ocp.checkpoint_utils.construct_restore_args(target))
  else:
    args = ocp.args.StandardRestore(target)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=args))["state"]
  except Exception as e:
    raise CheckpointDamagedError(f"{where} is corrupt: its arrays are unreadable: {e}") from e
  corrupt = checksum_mismatches(record["arrays"], restored) if verifiable else []
  if corrupt:
    raise CheckpointDamagedError(f"{where} is corrupt: arrays {_abbreviate(corrupt)} do not match the "
                                 "checksums written when it was saved")
  return restored


def _newest_first(manager: ocp.CheckpointManager) -> list[int]:
  return sorted(manager.all_steps(), reverse=True)


# ---------------------------------------------------------------------------------------------- the manager


class Checkpoints:
  """Saves and restores (TrainState, Progress) under `directory`; keeps the last `max_to_keep`."""

  def __init__(self, directory: str, identity: RunIdentity, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.identity = identity
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "progress"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, state: TrainState, progress: Progress) -> None:
    """Starts an async save of step `progress.step` (call `wait` before the arrays are donated).

    The arrays' checksums are computed now, synchronously, from the arrays being saved. Raises
    CheckpointError if Orbax declines the step (one at or below the latest step on disk), which would
    otherwise lose the save silently.
    """
    record = {
        "format": RECORD_FORMAT,
        "step": int(progress.step), "data_position": int(progress.data_position),
        "rng_key_data": np.asarray(progress.rng_key_data).astype(np.uint32).tolist(),
        "model_config": dict(self.identity.model_config),
        "tokenizer_fingerprint": self.identity.tokenizer_fingerprint,
        "arrays": array_manifest(state),
    }
    record = json.loads(json.dumps(record))  # what a restore reads back (tuples become lists)
    record["record_sha256"] = record_digest(record)
    saved = self._manager.save(progress.step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(record)))
    if not saved:
      raise CheckpointError(f"Orbax declined to save step {progress.step} in {self.directory} "
                            f"(its latest step is {self.latest_step()})")

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def restore(self, abstract_state: TrainState, step: int | None = None) -> tuple[TrainState, Progress]:
    """The verified state and progress at `step`, placed as `abstract_state`'s shardings.

    With `step` None: the latest checkpoint that verifies. Damaged newer ones are moved aside (see the
    module docstring) with a warning each. Raises CheckpointIncompatibleError if a checkpoint was written
    by an incompatible run, CheckpointDamagedError if the requested `step` is damaged, and
    CheckpointError if there is no checkpoint, or none that verifies.
    """
    available = _newest_first(self._manager)
    if step is not None and step not in available:
      raise CheckpointError(f"no checkpoint at step {step} in {self.directory} "
                            f"(available: {sorted(available)})")
    if step is not None:
      return self._restore_step(abstract_state, step)
    if not available:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    damaged: list[tuple[int, CheckpointDamagedError]] = []
    for candidate in available:
      try:
        restored = self._restore_step(abstract_state, candidate)
      except CheckpointDamagedError as error:
        damaged.append((candidate, error))
        continue
      for bad_step, error in damaged:
        moved_to = self._set_aside(bad_step, str(error))
        logging.warning("%s\nIt was moved to %s (kept, not deleted); resuming from the previous checkpoint "
                        "that verifies, step %d, instead.", error, moved_to, candidate)
      return restored
    raise CheckpointError(f"no usable checkpoint in {self.directory}; each is damaged (all were left in "
                          "place):\n  " + "\n  ".join(str(error) for _, error in damaged))

  def _restore_step(self, abstract_state: TrainState, step: int) -> tuple[TrainState, Progress]:
    """The verified state and progress of one step (no fallback)."""
    where = f"checkpoint {self.directory}/{step}"
    record = _read_record(self._manager, where, step)
    problems = self.identity.mismatches(record)
    if problems:
      raise CheckpointIncompatibleError(f"{where} is incompatible with this run:\n  " + "\n  ".join(problems))
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        abstract_state)
    state = _restore_arrays(self._manager, where, step, record, target)
    progress = Progress(step=record["step"], data_position=record["data_position"],
                        rng_key_data=np.asarray(record["rng_key_data"], np.uint32).reshape(
                            _default_key_data_shape()))
    return state, progress

  def _set_aside(self, step: int, reason: str) -> str:
    """Moves step `step`'s directory to `damaged/<step>[-n]` with a note of why; returns the new path.

    Out of Orbax's sight, it can neither be restored again nor collide with a later save of that step.
    One process moves it (the directory is shared); the others wait for it.
    """
    aside = os.path.join(self.directory, DAMAGED_DIRECTORY)
    target = os.path.join(aside, str(step))
    suffix = 1
    while os.path.exists(target):
      target = os.path.join(aside, f"{step}-{suffix}")
      suffix += 1
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      os.rename(os.path.join(self.directory, str(step)), target)
      with open(target + ".reason.txt", "w", encoding="utf-8") as f:
        f.write(reason + "\n")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"rao_jax checkpoint {step} set aside")
    self._manager.reload()
    return target

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def read_latest_params(directory: str, abstract_params: Callable[[Mapping[str, Any]], Any]
                       ) -> tuple[int, RunIdentity, Any] | None:
  """Read-only: (step, run identity, params) of the latest verified checkpoint under `directory`; None if
  there is no checkpoint.

  Only the parameters are read (the optimiser state stays on disk) and verified against their checksums.
  `abstract_params(model_config)` gives their target (jax.ShapeDtypeStruct leaves) for the model config the
  checkpoint records. A damaged latest checkpoint is skipped for the previous one with a warning (nothing
  is moved: this reader writes nothing); raises CheckpointError if none verifies.
  """
  if not os.path.isdir(directory):
    return None
  directory = os.path.abspath(directory)
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                                  item_names=("state", "progress"))
  try:
    steps = _newest_first(manager)
    if not steps:
      return None
    damaged = []
    for step in steps:
      where = f"checkpoint {directory}/{step}"
      try:
        record = _read_record(manager, where, step)
        identity = RunIdentity(model_config=record["model_config"],
                               tokenizer_fingerprint=record["tokenizer_fingerprint"])
        state = _restore_arrays(manager, where, step, record, {"params": abstract_params(identity.model_config)},
                                partial=True)
      except CheckpointDamagedError as error:
        damaged.append(error)
        continue
      for error in damaged:
        logging.warning("%s\nReading the previous checkpoint that verifies, step %d, instead.", error, step)
      return step, identity, state["params"]
    raise CheckpointError(f"no usable checkpoint in {directory}; each is damaged:\n  "
                          + "\n  ".join(str(error) for error in damaged))
  finally:
    manager.close()
