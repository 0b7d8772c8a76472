"""End-to-end at toy size: the whole RAO loop (dataset, tokenizer, SFT warm start, rollouts, train steps,
greedy eval, checkpoints, logs), exact resume, and skipped non-finite updates and bad rewards."""
import dataclasses
import importlib.util
import logging
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from rao_jax.rollout import engine as engine_lib
from rao_jax.train import policy_update, trainer
from rao_jax.train.checkpoint import Checkpoints
from rao_jax.train.metrics_log import read_records
from rao_jax.train.settings import settings_from_config

pytestmark = pytest.mark.e2e

_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "textcraft.py")
_BUILT_PARTS = ("data", "tokenizer", "warm_start")


def _toy_settings(workdir, num_steps):
  """The tiny preset shrunk to seconds: a 1-layer model, 1 task × 2 trees per step, short turns."""
  spec = importlib.util.spec_from_file_location("textcraft_config", _CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config("tiny")
  cfg.workdir = str(workdir)
  cfg.model.update(vocab_size=1280, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16,
                   intermediate_size=64)
  cfg.tokenizer.update(vocab_size=1280, corpus_examples=200, transcript_tasks=3)
  cfg.data.update(train_difficulties=("easy",), max_train_tasks=3)
  cfg.env.crafts_per_cell = 8
  cfg.warm_start.data.update(difficulties=("easy",), max_tasks_per_difficulty=2, recursive_fraction=0.0)
  cfg.warm_start.sft.update(num_steps=1, rows_per_batch=2, row_length=2048)
  cfg.warm_start.sft.optimizer.warmup_steps = 0
  cfg.rollout.update(num_slots=4, context_window=2048, completion_limit=16, max_steps_per_node=5, max_depth=1,
                     decode_steps_per_round=64, prefill_chunk_buckets=(128, 1024), prefill_row_buckets=(4,))
  cfg.rl.update(num_steps=num_steps, tasks_per_step=1, samples_per_task=2)
  cfg.policy_update.update(row_length=2048, rows_per_micro_batch=2)
  cfg.policy_update.optimizer.learning_rate = 3e-2
  cfg.eval.update(every_steps=100, difficulties=("easy",), tasks_per_difficulty=1)
  cfg.log.update(progress_bar=False, train_trees_every=1)
  return settings_from_config(cfg)


def _train(workdir, num_steps):
  with trainer.Trainer(trainer.build_run(_toy_settings(workdir, num_steps))) as run:
    run.train()
    return run.state


def _copy_built_parts(source, target):
  for part in _BUILT_PARTS:
    shutil.copytree(os.path.join(source, part), os.path.join(target, part))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """A work directory holding the dataset, tokenizer and warm start (built once for the module)."""
  workdir = tmp_path_factory.mktemp("built")
  run = trainer.build_run(_toy_settings(workdir, num_steps=1))
  (key,) = os.listdir(os.path.join(workdir, "tokenizer"))
  assert os.path.isfile(os.path.join(workdir, "tokenizer", key, "tokenizer.model"))
  assert os.listdir(os.path.join(workdir, "warm_start"))
  warm = [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(run.initial_policy))]
  return workdir, run, warm


def _deterministic(records):
  return [{k: v for k, v in r.items() if not k.startswith(("time/", "rollout/time/"))} for r in records]


def test_resumed_run_reproduces_the_uninterrupted_run(built, tmp_path, monkeypatch, stand_in_advantages):
  monkeypatch.setattr(policy_update, "advantages_from_trees", stand_in_advantages)
  source, _, warm = built
  interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
  _copy_built_parts(source, interrupted)
  _copy_built_parts(source, uninterrupted)

  _train(interrupted, num_steps=1)     # stopped after the checkpoint at step 1 (real kills: test_trainer_kill_*)
  with trainer.Trainer(trainer.build_run(_toy_settings(interrupted, 2))) as rerun:
    written = rerun.train()  # the rerun resumes from it
    resumed_state = rerun.state
  # It starts at step 1: a restore that did nothing would redo step 0 (and its set-up records).
  assert [(r["step"], r["kind"]) for r in written] == [(1, "train"), (2, "eval")]
  full_state = _train(uninterrupted, num_steps=2)

  resumed = read_records(str(interrupted / "metrics.jsonl"))
  full = read_records(str(uninterrupted / "metrics.jsonl"))
  assert [(r["step"], r["kind"]) for r in full if r["kind"] != "sft"] == [
      (0, "setup"), (0, "eval"), (0, "train"), (1, "train"), (2, "eval")]
  assert [r["loss"] for r in full if r["kind"] == "sft"] == [r["loss"] for r in resumed if r["kind"] == "sft"]
  assert len([r for r in full if r["kind"] == "sft"]) == 1  # the warm start's loss curve (1 SFT step)
  assert all(r["train/updated"] == 1.0 for r in full if r["kind"] == "train")
  assert _deterministic(resumed) == _deterministic(full)
  for a, b in zip(jax.tree.leaves(resumed_state), jax.tree.leaves(full_state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The updates changed the policy, so a restore of the wrong state could not have matched.
  assert Checkpoints(str(uninterrupted / "checkpoints"), built[1].identity).latest_step() == 2
  assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(warm, jax.tree.leaves(full_state.params)))
  assert os.path.isfile(uninterrupted / "trees" / "eval_val_step000002.jsonl")
  assert os.path.isfile(uninterrupted / "trees" / "train_step000001.jsonl")
  assert os.listdir(uninterrupted / "tensorboard")
  # Rerunning a finished run does nothing.
  with trainer.Trainer(trainer.build_run(_toy_settings(uninterrupted, 2))) as run:
    assert run.train() == []


def test_non_finite_update_is_skipped_and_logged(built, tmp_path, monkeypatch, stand_in_advantages):
  def nan_advantages(trees, config, *, pad_to=None):
    result = stand_in_advantages(trees, config, pad_to=pad_to)
    return result.replace(advantage=np.full_like(result.advantage, np.nan))

  monkeypatch.setattr(policy_update, "advantages_from_trees", nan_advantages)
  source, _, warm = built
  _copy_built_parts(source, tmp_path)
  state = _train(tmp_path, num_steps=1)
  (train_record,) = [r for r in read_records(str(tmp_path / "metrics.jsonl")) if r["kind"] == "train"]
  assert train_record["train/skipped_nonfinite"] == 1.0 and train_record["train/updated"] == 0.0
  assert train_record["train/loss"] is None  # NaN is written as null
  for a, b in zip(warm, jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_bad_rewards_are_skipped_and_the_run_goes_on(built, tmp_path, monkeypatch, caplog, stand_in_advantages):
  """Fault injection: rollouts report NaN and out-of-range successes, as a misbehaving judge would, where
  they reach the trainer (the engine's trees, training and evaluation alike). Each bad training batch is
  skipped and logged (`train/skipped_bad_reward`), a NaN evaluation is logged as null, and the run goes
  on: the next sound batch updates the policy."""
  real_advantages, real_run = policy_update.advantages_from_trees, engine_lib.RolloutEngine.run
  fills = iter([np.nan, np.nan, 1.5, None, None])  # per engine call: eval 0, train 0, 1, 2, eval 3

  def judged_badly(self, *args, **kwargs):
    result = real_run(self, *args, **kwargs)
    fill = next(fills)
    if fill is None:
      return result
    success = np.where(np.arange(result.trees.num_nodes) % 2 == 0, fill, result.trees.success)
    return dataclasses.replace(result, trees=dataclasses.replace(result.trees, success=success))

  def checked_stand_in(trees, config, *, pad_to=None):
    real_advantages(trees, config, pad_to=pad_to)  # raises BadRewardError for unusable successes
    return stand_in_advantages(trees, config, pad_to=pad_to)

  monkeypatch.setattr(engine_lib.RolloutEngine, "run", judged_badly)
  monkeypatch.setattr(policy_update, "advantages_from_trees", checked_stand_in)
  source, _, warm = built
  _copy_built_parts(source, tmp_path)
  with caplog.at_level(logging.WARNING):
    state = _train(tmp_path, num_steps=3)
  records = read_records(str(tmp_path / "metrics.jsonl"))
  train = [r for r in records if r["kind"] == "train"]
  assert [(r["step"], r["train/skipped_bad_reward"], r["train/updated"]) for r in train] == [
      (0, 1.0, 0.0), (1, 1.0, 0.0), (2, 0.0, 1.0)]
  assert [(r["step"], r["success"] is None) for r in records if r["kind"] == "eval"] == [(0, True), (3, False)]
  skips = [r.getMessage() for r in caplog.records if "bad rewards, the update was skipped" in r.getMessage()]
  assert len(skips) == 2 and "finite number in [0, 1]" in skips[0]
  assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(warm, jax.tree.leaves(state.params)))
  assert next(fills, "exhausted") == "exhausted"  # every engine call was seen


def test_the_trainer_consumes_the_initial_policy(built):
  """One parameter copy: the Trainer moves the warm start's parameters into its train state and drops
  the module, so a second Trainer cannot be built from the same Run (it would train a stale copy)."""
  _, run, warm = built
  with trainer.Trainer(run) as loop:
    assert run.initial_policy is None
    for a, b in zip(warm, jax.tree.leaves(loop.state.params)):
      np.testing.assert_array_equal(a, np.asarray(b))
  with pytest.raises(ValueError, match="initial policy was consumed"):
    trainer.Trainer(run)
