"""Host shards: the trees and slots split H ways (one shard per process on a pod) grow the same trees.

In one process the engine runs all H shards itself, with the same plans, gathers and device calls as H
processes would make (`tests/train/test_multihost_e2e.py` runs real processes).
"""
import jax
import numpy as np
import pytest

from rao_jax.agent.chat import layout_for
from rao_jax.agent.interpreter.pool import InterpreterConfig, InterpreterPool
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers
from rao_jax.errors import FieldError
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.engine import RolloutEngine
from rao_jax.rollout.trees import Trees
from test_rollout_engine_scripted import ENV_CONFIG, ENV_NAME, _engine_config, _forcer, _model

SAME_FIELDS = ("tree", "group", "parent", "depth", "success", "num_children", "launch_cell", "end_reason",
               "steps", "tokens_generated", "token_offsets", "tokens", "loss_mask")


def _run(engine: RolloutEngine, tasks, transcripts, tokenizer) -> Trees:
  return engine.run(ENV_NAME, ENV_CONFIG, [t.to_dict() for t in tasks], samples_per_task=2,
                    rng=jax.random.key(0), forcer=_forcer(tokenizer, transcripts)).trees


@pytest.mark.e2e
def test_any_number_of_host_shards_grows_the_same_trees(toy_tokenizer, small_tasks):
  tasks = small_tasks["easy"][:2] + small_tasks["medium"][:1]
  transcripts = [solvers.solve(env_lib.make_root_environment(ENV_CONFIG, t.to_dict()), solvers.RECURSIVE)
                 for t in tasks]
  model = _model(toy_tokenizer.vocab_size)
  results = {}
  with InterpreterPool(InterpreterConfig()) as pool:
    for shards in (1, 2, 3):  # 3 shards: 2 trees and 3, 3 and 2 of the 8 slots each (evictions)
      config = RolloutConfig(**{**_engine_config(num_slots=8).__dict__, "host_shards": shards})
      engine = RolloutEngine(model, layout_for(toy_tokenizer), pool, config)
      results[shards] = _run(engine, tasks, transcripts, toy_tokenizer)
      assert engine.num_busy_slots() == 0
  reference = results[1]
  assert reference.num_trees == 6 and np.any(reference.parent >= 0)
  for shards in (2, 3):
    trees = results[shards]
    for field in SAME_FIELDS:
      np.testing.assert_array_equal(getattr(trees, field), getattr(reference, field), err_msg=field)
    np.testing.assert_allclose(trees.sampler_log_probs, reference.sampler_log_probs, atol=1e-4)
    assert [r["children"] for r in trees.records] == [r["children"] for r in reference.records]
    assert [r["goal"] for r in trees.records] == [r["goal"] for r in reference.records]


def test_host_shards_are_validated(toy_tokenizer):
  with pytest.raises(FieldError, match="host_shards"):
    RolloutConfig(host_shards=-1)
  config = RolloutConfig(num_slots=2, context_window=256, completion_limit=32, host_shards=3)
  with InterpreterPool(InterpreterConfig()) as pool:
    engine = RolloutEngine(_model(toy_tokenizer.vocab_size), layout_for(toy_tokenizer), pool, config)
    with pytest.raises(ValueError, match="3 host shards need at least as many slots"):
      engine.run(ENV_NAME, ENV_CONFIG, [{"targets": {}}], 1, jax.random.key(0))


def test_trees_concatenate_renumbers_rows():
  def part(tree_ids, parents, tokens_per_node):
    n = len(tree_ids)
    offsets = np.concatenate([[0], np.cumsum(tokens_per_node)]).astype(np.int64)
    total = int(offsets[-1])
    zeros = np.zeros(n, np.int32)
    return Trees(tree=np.asarray(tree_ids, np.int32), group=np.asarray(tree_ids, np.int32),
                 parent=np.asarray(parents, np.int32), depth=(np.asarray(parents) >= 0).astype(np.int32),
                 success=np.zeros(n, np.float32), num_children=zeros, launch_cell=zeros, end_reason=zeros,
                 steps=zeros, tokens_generated=zeros, first_round=zeros, last_round=zeros,
                 first_step=zeros.astype(np.int64), last_step=zeros.astype(np.int64), token_offsets=offsets,
                 tokens=np.arange(total, dtype=np.int32), loss_mask=np.ones(total, bool),
                 sampler_log_probs=np.zeros(total, np.float32),
                 records=tuple({"children": [i for i, p in enumerate(parents) if p == row]}
                               for row in range(n)))

  first = part([0, 0, 1], [-1, 0, -1], [3, 2, 1])
  second = part([2, 2, 2], [-1, 0, 0], [1, 4, 2])
  empty = part([], [], [])
  joined = Trees.concatenate([first, empty, second])
  assert joined.parent.tolist() == [-1, 0, -1, -1, 3, 3]
  assert joined.token_offsets.tolist() == [0, 3, 5, 6, 7, 11, 13]
  assert [r["children"] for r in joined.records] == [[1], [], [], [4, 5], [], []]
  np.testing.assert_array_equal(joined.node_sequence(4)[0], second.node_sequence(1)[0])
  assert Trees.concatenate([first]) is first
