"""Training checkpoints: Orbax `CheckpointManager` over the train state and the loop's position.

A checkpoint at step N (N RAO updates done) holds two items:
  state:    the `TrainState` pytree (params, optimiser state, update count), saved sharded and async;
  progress: JSON with the step, the data position (root tasks consumed), the base PRNG key's data, and
            the run's identity: the model config and the tokenizer fingerprint.
Restoring checks the identity against the current run before reading any array, so resuming with a
different model or tokenizer fails with a message naming what differs, and a damaged checkpoint fails
with one naming the step and directory instead of an Orbax traceback.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed while
saving leaves the previous checkpoint as the latest one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.train.train_step import TrainState


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used: corrupt, unreadable, or from an incompatible run."""


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
    for key in sorted(set(self.model_config) | set(saved_model)):
      if self.model_config.get(key) != saved_model.get(key):
        problems.append(f"model.{key}: checkpoint has {saved_model.get(key)!r}, this run has "
                        f"{self.model_config.get(key)!r}")
    if saved.get("tokenizer_fingerprint") != self.tokenizer_fingerprint:
      problems.append(f"tokenizer: checkpoint fingerprint {str(saved.get('tokenizer_fingerprint'))[:12]}… "
                      f"differs from this run's {self.tokenizer_fingerprint[:12]}…")
    return problems


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where the loop stands after `step` updates."""

  step: int
  data_position: int        # root tasks consumed from the training stream
  rng_key_data: np.ndarray  # [2] uint32 (threefry) key data of the run's base key


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

  def save(self, state: TrainState, progress: Progress) -> None:
    """Starts an async save of step `progress.step` (call `wait` before the arrays are donated)."""
    record = {
        "step": int(progress.step), "data_position": int(progress.data_position),
        "rng_key_data": np.asarray(progress.rng_key_data).astype(np.uint32).tolist(),
        "model_config": dict(self.identity.model_config),
        "tokenizer_fingerprint": self.identity.tokenizer_fingerprint,
    }
    self._manager.save(progress.step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(record)))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def restore(self, abstract_state: TrainState, step: int | None = None) -> tuple[TrainState, Progress]:
    """The state and progress at `step` (default: the latest), placed as `abstract_state`'s shardings.

    Raises CheckpointError if there is none, if it was written by an incompatible run, or if it is damaged.
    """
    step = self.latest_step() if step is None else step
    if step is None or step not in self._manager.all_steps():
      raise CheckpointError(f"no checkpoint at step {step} in {self.directory} "
                            f"(available: {list(self._manager.all_steps())})")
    where = f"checkpoint {self.directory}/{step}"
    try:
      record = self._manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))["progress"]
    except Exception as e:  # Orbax raises many types for missing or damaged files.
      raise CheckpointError(f"{where} is corrupt or unreadable (its progress record): {e}") from e
    missing = {"step", "data_position", "rng_key_data", "model_config", "tokenizer_fingerprint"} - set(record)
    if missing:
      raise CheckpointError(f"{where} is corrupt: its progress record lacks {sorted(missing)}")
    problems = self.identity.mismatches(record)
    if problems:
      raise CheckpointError(f"{where} is incompatible with this run:\n  " + "\n  ".join(problems))
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        abstract_state)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except Exception as e:
      raise CheckpointError(f"{where} is corrupt or does not match the train state's structure: {e}") from e
    progress = Progress(step=int(record["step"]), data_position=int(record["data_position"]),
                        rng_key_data=np.asarray(record["rng_key_data"], np.uint32))
    return restored["state"], progress

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def read_latest_params(directory: str, abstract_params: Callable[[Mapping[str, Any]], Any]
                       ) -> tuple[int, RunIdentity, Any] | None:
  """Read-only: (step, run identity, params) of the latest checkpoint under `directory`; None if none.

  Only the parameters are read (the optimiser state stays on disk). `abstract_params(model_config)` gives
  their target (jax.ShapeDtypeStruct leaves) for the model config the checkpoint records. Raises
  CheckpointError if the checkpoint is damaged.
  """
  if not os.path.isdir(directory):
    return None
  directory = os.path.abspath(directory)
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                                  item_names=("state", "progress"))
  try:
    step = manager.latest_step()
    if step is None:
      return None
    where = f"checkpoint {directory}/{step}"
    try:
      record = manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))["progress"]
      identity = RunIdentity(model_config=record["model_config"],
                             tokenizer_fingerprint=record["tokenizer_fingerprint"])
    except Exception as e:  # Orbax raises many types for missing or damaged files.
      raise CheckpointError(f"{where} is corrupt or unreadable (its progress record): {e}") from e
    target = {"params": abstract_params(identity.model_config)}
    try:
      state = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                       restore_args=ocp.checkpoint_utils.construct_restore_args(target))))["state"]
    except Exception as e:
      raise CheckpointError(f"{where} is corrupt or does not match its recorded model config: {e}") from e
    return step, identity, state["params"]
  finally:
    manager.close()
