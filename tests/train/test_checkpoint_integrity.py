"""Checkpoint integrity: a flipped bit in the array data or a damaged or inconsistent progress record is
detected at restore, and the latest checkpoint that verifies is used instead, with a warning, the damaged
one kept aside; an incompatible checkpoint is not mistaken for a damaged one."""
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from checkpoint_faults import flip_a_bit_in_the_array_data

from rao_jax.train import checkpoint
from rao_jax.train.checkpoint import (CheckpointDamagedError, CheckpointError, CheckpointIncompatibleError,
                                      Checkpoints, Progress, RunIdentity)

IDENTITY = RunIdentity(model_config={"hidden_size": 8, "rope": (1.0, 2.0)}, tokenizer_fingerprint="a" * 64)
_KEY = np.asarray(jax.random.key_data(jax.random.key(5)))


def _state(step: int) -> dict:
  """A small state whose values differ per step (random float32: its chunks do not compress away)."""
  rng = np.random.default_rng(step)
  return {"params": {"w": jnp.asarray(rng.standard_normal(16384).astype(np.float32))},
          "b": jnp.asarray(rng.standard_normal(7).astype(np.float32)).astype(jnp.bfloat16),
          "count": jnp.asarray(step, jnp.int32)}


def _abstract() -> dict:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))


def _save(directory, *steps: int) -> None:
  checkpoints = Checkpoints(str(directory), IDENTITY, max_to_keep=3)
  for step in steps:
    checkpoints.save(_state(step), Progress(step=step, data_position=4 * step, rng_key_data=_KEY))
  checkpoints.close()


def _assert_state_is(state: dict, step: int) -> None:
  for leaf, expected in zip(jax.tree.leaves(state), jax.tree.leaves(_state(step)), strict=True):
    np.testing.assert_array_equal(np.asarray(leaf), np.asarray(expected))


def _orbax_restore(directory: str, step: int) -> dict:
  """What Orbax alone restores, without our verification."""
  manager = ocp.CheckpointManager(directory, item_names=("state", "progress"))
  try:
    return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract())))["state"]
  finally:
    manager.close()


def _rewrite_record(step_directory: str, edit) -> None:
  """Applies `edit` to a step's progress record and rewrites it with a matching sha256 (a consistent-looking
  record with wrong contents, as a buggy writer would leave)."""
  path = os.path.join(step_directory, "progress", "metadata")
  with open(path, encoding="utf-8") as f:
    record = json.load(f)
  edit(record)
  record["record_sha256"] = checkpoint.record_digest(record)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f)


def test_a_flipped_bit_in_the_array_data_falls_back_to_the_previous_step(tmp_path, caplog):
  directory = str(tmp_path)
  _save(directory, 1, 2)
  flip_a_bit_in_the_array_data(os.path.join(directory, "2"))
  # The damage Orbax misses: the flipped step restores without error, with wrong values.
  silently_wrong = _orbax_restore(directory, 2)
  assert not np.array_equal(np.asarray(silently_wrong["params"]["w"]), np.asarray(_state(2)["params"]["w"]))

  checkpoints = Checkpoints(directory, IDENTITY, max_to_keep=3)
  with caplog.at_level(logging.WARNING):
    state, progress = checkpoints.restore(_abstract())
  assert progress.step == 1 and progress.data_position == 4
  _assert_state_is(state, 1)
  (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert f"checkpoint {directory}/2 is corrupt: arrays params/w do not match the checksums" in warning
  assert "resuming from the previous checkpoint that verifies, step 1" in warning
  # The damaged step is kept aside, with why, out of Orbax's sight; the next save of that step works.
  aside = os.path.join(directory, "damaged", "2")
  assert os.path.isdir(os.path.join(aside, "state")) and not os.path.exists(os.path.join(directory, "2"))
  with open(aside + ".reason.txt", encoding="utf-8") as f:
    assert "do not match the checksums" in f.read()
  assert checkpoints.all_steps() == [1]
  checkpoints.save(_state(2), Progress(step=2, data_position=8, rng_key_data=_KEY))
  checkpoints.close()
  reopened = Checkpoints(directory, IDENTITY)
  state, progress = reopened.restore(_abstract())
  assert progress.step == 2 and reopened.all_steps() == [1, 2]
  _assert_state_is(state, 2)
  reopened.close()


def test_a_damaged_step_is_not_restored_when_asked_for_by_number(tmp_path):
  _save(tmp_path, 1, 2)
  flip_a_bit_in_the_array_data(os.path.join(str(tmp_path), "2"))
  with pytest.raises(CheckpointDamagedError, match=r"/2 is corrupt: arrays params/w do not match"):
    Checkpoints(str(tmp_path), IDENTITY).restore(_abstract(), step=2)
  assert os.path.isdir(tmp_path / "2")  # nothing moved: the caller chose that step


def test_with_no_checkpoint_that_verifies_restore_fails_and_moves_nothing(tmp_path, caplog):
  _save(tmp_path, 1, 2)
  for step in ("1", "2"):
    flip_a_bit_in_the_array_data(str(tmp_path / step))
  with caplog.at_level(logging.WARNING), pytest.raises(
      CheckpointError, match=r"no usable checkpoint(.|\n)*/2 is corrupt(.|\n)*/1 is corrupt"):
    Checkpoints(str(tmp_path), IDENTITY).restore(_abstract())
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_flipped_bit_in_the_progress_record_falls_back(tmp_path, caplog):
  _save(tmp_path, 1, 2)
  path = tmp_path / "2" / "progress" / "metadata"
  text = path.read_text()
  index = text.index('"data_position": 8') + len('"data_position": ')
  path.write_text(text[:index] + "9" + text[index + 1:])  # '8' -> '9': one flipped bit, still valid JSON
  with caplog.at_level(logging.WARNING):
    _, progress = Checkpoints(str(tmp_path), IDENTITY).restore(_abstract())
  assert progress.step == 1
  assert any("/2 is corrupt: its progress record is inconsistent: its contents do not match its sha256"
             in r.getMessage() for r in caplog.records)


def _set(field, value):
  return lambda record: record.__setitem__(field, value)


@pytest.mark.parametrize("edit, problem", [
    (_set("step", 7), r"step 7 is not the directory's step 2"),
    (_set("step", True), r"step True is not the directory's step 2"),
    (_set("data_position", -4), r"data_position -4 is not an integer >= 0"),
    (_set("data_position", "8"), r"data_position '8' is not an integer >= 0"),
    (_set("rng_key_data", [1, 2, 3]), r"rng_key_data \[1, 2, 3\] is not 2 uint32 values"),
    (_set("rng_key_data", [1, 1 << 32]), r"rng_key_data .* is not 2 uint32 values"),
    (_set("format", 1), r"format 1 is not 2"),
    (_set("arrays", {"w": {"shape": [3]}}), r"arrays is not a map of leaf name to shape, dtype and checksum"),
    (lambda record: record.pop("record_sha256"), r"lacks \['record_sha256'\] \(written before checkpoints"),
])
def test_an_inconsistent_progress_record_is_rejected(tmp_path, edit, problem):
  _save(tmp_path, 1)
  if "record_sha256" in problem:  # an old-format record: no checksums at all, so no digest to recompute
    path = tmp_path / "1" / "progress" / "metadata"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
  else:
    _rewrite_record(str(tmp_path / "1"), edit)
  with pytest.raises(CheckpointDamagedError, match=r"/1 is corrupt: its progress record is inconsistent: .*"
                                                   + problem.replace("directory's step 2", "directory's step 1")):
    Checkpoints(str(tmp_path), IDENTITY).restore(_abstract(), step=1)


def test_a_checkpoint_from_before_checksums_is_restored_with_a_warning(tmp_path, caplog):
  _save(tmp_path, 1)
  path = tmp_path / "1" / "progress" / "metadata"
  record = json.loads(path.read_text())
  for field in ("format", "arrays", "record_sha256"):  # a format-1 record, as older runs wrote them
    record.pop(field)
  path.write_text(json.dumps(record))
  with caplog.at_level("WARNING"):
    restored, progress = Checkpoints(str(tmp_path), IDENTITY).restore(_abstract(), step=1)
  assert progress.step == 1 and "before checkpoints carried checksums" in caplog.text
  record["step"] = 5  # and its other fields are still checked
  path.write_text(json.dumps(record))
  with pytest.raises(CheckpointDamagedError, match="step 5 is not the directory's step 1"):
    Checkpoints(str(tmp_path), IDENTITY).restore(_abstract(), step=1)


def test_a_changed_train_state_structure_is_incompatible_not_damaged(tmp_path):
  _save(tmp_path, 1, 2)
  other = dict(_abstract(), params={"w": jax.ShapeDtypeStruct((8,), jnp.float32)},
               extra=jax.ShapeDtypeStruct((), jnp.int32))
  with pytest.raises(CheckpointIncompatibleError, match=r"/2 holds another train state structure(.|\n)*"
                                                        r"extra: in this run's train state, not in the checkpoint"
                                                        r"(.|\n)*params/w: checkpoint has float32\[16384\], this run "
                                                        r"has float32\[8\]"):
    Checkpoints(str(tmp_path), IDENTITY).restore(other)
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # no fallback, nothing moved


def test_an_incompatible_identity_does_not_fall_back(tmp_path):
  _save(tmp_path, 1, 2)
  other = RunIdentity(model_config={"hidden_size": 16, "rope": (1.0, 2.0)}, tokenizer_fingerprint="a" * 64)
  with pytest.raises(CheckpointIncompatibleError, match=r"/2 is incompatible(.|\n)*model\.hidden_size"):
    Checkpoints(str(tmp_path), other).restore(_abstract())
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]


def test_a_declined_save_is_an_error_not_silent(tmp_path):
  checkpoints = Checkpoints(str(tmp_path), IDENTITY)
  checkpoints.save(_state(2), Progress(step=2, data_position=8, rng_key_data=_KEY))
  with pytest.raises(CheckpointError, match=r"declined to save step 1 .*latest step is 2"):
    checkpoints.save(_state(1), Progress(step=1, data_position=4, rng_key_data=_KEY))
  checkpoints.close()


def test_read_latest_params_verifies_and_falls_back(tmp_path, caplog):
  _save(tmp_path, 1, 2)
  flip_a_bit_in_the_array_data(str(tmp_path / "2"))
  abstract = lambda model_config: {"w": jax.ShapeDtypeStruct((16384,), jnp.float32)}  # noqa: E731
  with caplog.at_level(logging.WARNING):
    step, identity, params = checkpoint.read_latest_params(str(tmp_path), abstract)
  assert step == 1 and identity.model_config["hidden_size"] == 8
  np.testing.assert_array_equal(np.asarray(params["w"]), np.asarray(_state(1)["params"]["w"]))
  assert any("/2 is corrupt" in r.getMessage() and "previous checkpoint that verifies, step 1" in r.getMessage()
             for r in caplog.records)
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # read-only: nothing moved


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32, jnp.uint8, jnp.bool_])
def test_the_checksum_catches_every_single_bit_flip(dtype):
  rng = np.random.default_rng(0)
  values = rng.standard_normal((5, 12)) * 50
  host = np.asarray(jnp.asarray(values > 0) if dtype == jnp.bool_ else jnp.asarray(values).astype(dtype))
  original = checkpoint.array_checksums({"x": jnp.asarray(host)})["x"]
  raw = np.frombuffer(host.tobytes(), np.uint8)
  bits_per_byte = 1 if dtype == jnp.bool_ else 8  # a bool byte holds 0 or 1
  for flip in rng.choice(raw.size * bits_per_byte, 40, replace=False):
    damaged = raw.copy()
    damaged[flip // bits_per_byte] ^= 1 << (flip % bits_per_byte)
    flipped = np.frombuffer(damaged.tobytes(), host.dtype).reshape(host.shape)
    assert checkpoint.array_checksums({"x": jnp.asarray(flipped)})["x"] != original, flip
  # Swapping two different words keeps the plain sum; the position-weighted one catches it.
  swapped = host.copy().reshape(-1)
  swapped[[0, 1]] = swapped[[1, 0]]
  assert swapped[0] != swapped[1]
  assert checkpoint.array_checksums({"x": jnp.asarray(swapped.reshape(host.shape))})["x"] != original
