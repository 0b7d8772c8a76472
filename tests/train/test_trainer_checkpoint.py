"""Checkpoints: exact round trip of the train state and progress; clear errors for incompatible or
damaged checkpoints. Also the metrics log's resume semantics and the training task stream."""
import json
import os

import jax
import numpy as np
import pytest

from rao_jax import sharding
from rao_jax.envs.textcraft_synth.tasks import Task
from rao_jax.train import trainer
from rao_jax.train.checkpoint import CheckpointError, Checkpoints, Progress, RunIdentity
from rao_jax.train.metrics_log import MetricsLog, read_records
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer
from rao_jax.train.train_step import create_train_state

IDENTITY = RunIdentity(model_config={"hidden_size": 32, "num_layers": 1}, tokenizer_fingerprint="f" * 64)


@pytest.fixture(scope="module")
def train_state(make_model):
  tx = make_optimizer(OptimizerConfig(learning_rate=1e-3))
  _, state = create_train_state(make_model(), tx, sharding.make_mesh())
  # Non-trivial optimiser moments: one update with a fixed gradient (jitted: eager optax is slow).
  @jax.jit
  def update(state):
    grads = jax.tree.map(lambda p: 0.01 * jax.numpy.ones_like(p), state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=jax.tree.map(lambda p, u: p + u, state.params, updates), opt_state=opt_state,
                         step=state.step + 1)
  return update(state)


def _saved(directory, state, step=3):
  checkpoints = Checkpoints(str(directory), IDENTITY)
  checkpoints.save(state, Progress(step=step, data_position=4 * step,
                                   rng_key_data=np.asarray(jax.random.key_data(jax.random.key(7)))))
  checkpoints.close()
  return os.path.join(str(directory), str(step))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_exact(tmp_path, train_state):
  _saved(tmp_path, train_state)
  checkpoints = Checkpoints(str(tmp_path), IDENTITY)
  assert checkpoints.latest_step() == 3
  restored, progress = checkpoints.restore(train_state)
  _assert_trees_equal(restored, train_state)
  assert (progress.step, progress.data_position) == (3, 12)
  restored_key = jax.random.wrap_key_data(progress.rng_key_data)
  np.testing.assert_array_equal(jax.random.uniform(restored_key, (3,)),
                                jax.random.uniform(jax.random.key(7), (3,)))
  checkpoints.close()


def test_incompatible_run_is_named(tmp_path, train_state):
  _saved(tmp_path, train_state)
  other = RunIdentity(model_config={"hidden_size": 64, "num_layers": 1}, tokenizer_fingerprint="e" * 64)
  with pytest.raises(CheckpointError, match=r"incompatible(.|\n)*model\.hidden_size: checkpoint has 32, "
                                            r"this run has 64(.|\n)*tokenizer"):
    Checkpoints(str(tmp_path), other).restore(train_state)


def _overwrite_item(checkpoint_path: str, item: str, content: bytes) -> None:
  """Replaces every file of one checkpoint item (but Orbax's commit marker) with `content`."""
  for root, _, files in os.walk(os.path.join(checkpoint_path, item)):
    for name in files:
      if name != "commit_success.txt":
        with open(os.path.join(root, name), "wb") as f:
          f.write(content)


def test_corrupt_arrays_are_reported(tmp_path, train_state):
  _overwrite_item(_saved(tmp_path, train_state), "state", b"garbage")
  with pytest.raises(CheckpointError, match=r"checkpoint .*/3 is corrupt"):
    Checkpoints(str(tmp_path), IDENTITY).restore(train_state)


def test_corrupt_progress_record_is_reported(tmp_path, train_state):
  _overwrite_item(_saved(tmp_path, train_state), "progress", b"{not json")
  with pytest.raises(CheckpointError, match=r"corrupt or unreadable \(its progress record\)"):
    Checkpoints(str(tmp_path), IDENTITY).restore(train_state)


def test_missing_step_is_reported(tmp_path, train_state):
  _saved(tmp_path, train_state)
  with pytest.raises(CheckpointError, match=r"no checkpoint at step 5 .*available: \[3\]"):
    Checkpoints(str(tmp_path), IDENTITY).restore(train_state, step=5)


def test_metrics_log_drops_records_from_the_resumed_step_on(tmp_path):
  with MetricsLog(str(tmp_path), tensorboard=False) as log:
    for step in range(4):
      log.write(step, "train", {"loss": np.float32(step), "bad": float("nan")})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "kind": "tr')  # a kill mid-write
  assert [r["step"] for r in read_records(str(tmp_path / "metrics.jsonl"))] == [0, 1, 2, 3]
  with MetricsLog(str(tmp_path), start_step=2, tensorboard=True) as log:
    log.write(2, "eval", {"success": 0.5})
  records = read_records(str(tmp_path / "metrics.jsonl"))
  assert [(r["step"], r["kind"]) for r in records] == [(0, "train"), (1, "train"), (2, "eval")]
  assert records[0]["bad"] is None and records[1]["loss"] == 1.0
  assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["success"] == 0.5
  assert os.listdir(tmp_path / "tensorboard")


def _tasks(n):
  return [Task(targets={f"item{i}": 1}, inventory={"ore": 1}, difficulty="easy", tier=1, gold_plan=())
          for i in range(n)]


def test_task_stream_is_a_seeded_permutation_per_epoch():
  tasks = _tasks(5)
  first_epoch = trainer.stream_tasks(tasks, 0, 5, seed=3)
  assert sorted(t.goal_text() for t in first_epoch) == sorted(t.goal_text() for t in tasks)
  # Any window of the stream equals the same window of a longer read (what resuming relies on).
  whole = trainer.stream_tasks(tasks, 0, 12, seed=3)
  assert trainer.stream_tasks(tasks, 7, 4, seed=3) == whole[7:11]
  assert sorted(t.goal_text() for t in whole[5:10]) == sorted(t.goal_text() for t in tasks)
  assert whole[5:10] != whole[:5]  # each epoch has its own order
  assert trainer.stream_tasks(tasks, 0, 5, seed=4) != first_epoch  # and each seed
  with pytest.raises(ValueError, match="no training tasks"):
    trainer.stream_tasks([], 0, 1, seed=0)


def test_eval_tasks_takes_the_first_of_each_difficulty():
  tasks = _tasks(3) + [Task(targets={"x": 1}, inventory={"ore": 1}, difficulty="hard", tier=3, gold_plan=())]
  chosen = trainer.eval_tasks(tasks, ("hard", "easy"), 2)
  assert [t.difficulty for t in chosen] == ["hard", "easy", "easy"]
  assert chosen[1] is tasks[0] and chosen[2] is tasks[1]
