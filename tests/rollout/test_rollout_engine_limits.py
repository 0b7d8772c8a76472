"""The engine under hostile cells, random policies and every limit of the method spec."""
import jax
import numpy as np
import pytest
from flax import nnx

from rao_jax.agent.chat import layout_for
from rao_jax.agent.interpreter.pool import InterpreterConfig, InterpreterPool
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.engine import RolloutEngine
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.rollout.scheduler import _matching_prefix
from rao_jax.rollout.trees import EndReason

ENV_NAME, ENV_CONFIG = "textcraft_synth", {"world": "small"}
MAX_DEPTH = 2


@pytest.fixture(scope="module")
def pool():
  config = InterpreterConfig(cell_time_limit_s=1.0, max_output_chars=256)
  with InterpreterPool(config) as pool:
    yield pool


@pytest.fixture(scope="module")
def model(toy_tokenizer):
  config = ModelConfig(vocab_size=toy_tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, head_dim=16, intermediate_size=64)
  return Transformer(config, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def tasks(small_tasks):
  return [t.to_dict() for t in small_tasks["easy"][:2]]


def _engine(model, tokenizer, pool, **overrides):
  settings = dict(num_slots=4, context_window=2048, completion_limit=48, max_steps_per_node=3,
                  max_depth=MAX_DEPTH, decode_steps_per_round=64, prefill_chunk_buckets=(64, 256),
                  prefill_row_buckets=(4,), sampling=SamplingConfig(temperature=0.0))
  settings.update(overrides)
  return RolloutEngine(model, layout_for(tokenizer), pool, RolloutConfig(**settings))


def _script(tokenizer, turns_by_path):
  """A forcer playing fixed cells: turns_by_path[path or "*"][turn] is the code (None: sample)."""
  def force(group, path, turn):
    turns = turns_by_path.get(path, turns_by_path.get("*", []))
    if turn >= len(turns) or turns[turn] is None:
      return None
    return tokenizer.encode(f"<thought>scripted</thought>\n<python>\n{turns[turn]}\n</python>")
  return force


def _statuses(trees, node):
  return [turn["status"] for turn in trees.records[node]["turns"]]


def test_hostile_cells_end_as_observations(model, toy_tokenizer, pool, tasks):
  cells = [
      "while True:\n    pass",
      "import os\nos.system('echo pwned')",
      "print('x' * 100000)",
      "launch_subagent({'m1_i1': 1})",
      "finish({1, 2})",
      "raise SystemExit(3)",
      "r = await launch_subagent({'NOT_AN_ITEM': 1})\nprint(r)",
      "finish('done')",
  ]
  engine = _engine(model, toy_tokenizer, pool, max_steps_per_node=len(cells), completion_limit=64)
  result = engine.run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0),
                      forcer=_script(toy_tokenizer, {(): cells}))
  trees = result.trees
  assert trees.num_nodes == 1 and trees.end_reason[0] == EndReason.FINISHED
  assert trees.success[0] == 0.0  # finished without crafting its targets
  statuses = _statuses(trees, 0)
  assert statuses == ["error", "error", "output", "error", "error", "error", "output", "finished"]
  observations = [t["observation"] for t in trees.records[0]["turns"]]
  assert len(observations[2]) < 600  # the huge print was truncated
  assert engine.num_busy_slots() == 0


def test_depth_cap_refuses_launches(model, toy_tokenizer, pool, tasks):
  script = {"*": ["r = await launch_subagent({'m1_i1': 1})\nprint(r)", "finish('ok')"]}
  result = _engine(model, toy_tokenizer, pool).run(ENV_NAME, ENV_CONFIG, tasks[:1], 2, jax.random.key(0),
                                                   forcer=_script(toy_tokenizer, script))
  trees = result.trees
  assert trees.num_nodes == 2 * (MAX_DEPTH + 1)  # a chain per tree, cut at the depth cap
  assert trees.depth.max() == MAX_DEPTH
  deepest = np.flatnonzero(trees.depth == MAX_DEPTH)
  assert np.all(trees.num_children[deepest] == 0)
  for node in deepest:
    assert "refused" in trees.records[node]["turns"][0]["observation"]
  assert np.all(trees.end_reason == EndReason.FINISHED)


def test_step_cap_and_context_overflow(model, toy_tokenizer, pool, tasks):
  result = _engine(model, toy_tokenizer, pool).run(
      ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0), forcer=_script(toy_tokenizer, {"*": ["print(1)"] * 9}))
  assert result.trees.end_reason.tolist() == [EndReason.STEP_LIMIT]
  assert result.trees.steps.tolist() == [3]

  engine = _engine(model, toy_tokenizer, pool, max_steps_per_node=25, completion_limit=64)
  result = engine.run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0),
                      forcer=_script(toy_tokenizer, {"*": ["print(list(range(300)))"] * 25}))
  trees = result.trees
  assert trees.end_reason.tolist() == [EndReason.CONTEXT_OVERFLOW] and trees.success[0] == 0
  tokens, _, _ = trees.node_sequence(0)
  # The sequence stops at the last completion (the observation that did not fit was never fed).
  assert len(tokens) <= 2048 - 64
  assert trees.records[0]["turns"][-1]["observation"].startswith("[Cell")


def test_random_policy_ends_every_node_and_never_leaks_slots(model, toy_tokenizer, pool, tasks):
  engine = _engine(model, toy_tokenizer, pool, sampling=SamplingConfig(temperature=1.0))
  result = engine.run(ENV_NAME, ENV_CONFIG, tasks, 3, jax.random.key(1))
  trees = result.trees
  assert trees.num_nodes == 6
  assert set(trees.end_reason.tolist()) <= {EndReason.STEP_LIMIT, EndReason.CONTEXT_OVERFLOW,
                                           EndReason.FINISHED}
  assert all(_statuses(trees, i) for i in range(trees.num_nodes))
  # Completions that hit the limit without </python> are cut at exactly completion_limit tokens.
  assert trees.tokens_generated.max() <= 3 * 48
  assert engine.num_busy_slots() == 0


def test_tree_timeout(model, toy_tokenizer, pool, tasks):
  engine = _engine(model, toy_tokenizer, pool, tree_timeout_s=1e-6)
  result = engine.run(ENV_NAME, ENV_CONFIG, tasks, 1, jax.random.key(0))
  assert np.all(result.trees.end_reason == EndReason.TIMEOUT)
  assert engine.num_busy_slots() == 0


def test_greedy_trees_identical_across_slot_counts_with_eviction(model, toy_tokenizer, pool, tasks):
  """Two slots force the waiting root out (its cache is rebuilt on resume); six never evict; reading the
  shared prompt prefixes from one table (cascade attention) gives the same tokens as prefilling every
  prompt in full; so do own caches resized between window buckets as the nodes grow and finish."""
  launch = ("a, b, c = await asyncio.gather(launch_subagent({'m1_i1': 1}), "
            "launch_subagent({'m2_i1': 1}), launch_subagent({'m6_i1': 1}))\nprint(a, b, c)")
  script = {(): [launch, None, None]}   # children and the root's later turns sample greedily
  sequences = []
  settings = ((2, True, ()), (6, True, ()), (6, False, ()), (2, True, (128, 192, 256)), (6, False, (768, 1024, 1536)))
  for num_slots, shared_prefix, buckets in settings:
    engine = _engine(model, toy_tokenizer, pool, num_slots=num_slots, prefill_row_buckets=(num_slots,),
                     completion_limit=96, share_prompt_prefix=shared_prefix, cache_window_buckets=buckets)
    result = engine.run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0),
                        forcer=_script(toy_tokenizer, script))
    trees = result.trees
    assert trees.num_nodes == 4
    assert (result.timings.evictions > 0) == (num_slots == 2)
    assert (result.timings.prefix_installs >= 4) == shared_prefix  # every node starts from it
    assert (result.timings.cache_resizes >= 2) == bool(buckets)  # down to a bucket, and on
    assert (len(result.shared_prompts or ()) == 2) == shared_prefix  # delegating, and at the depth cap
    sequences.append([trees.node_sequence(i)[0].tolist() for i in range(trees.num_nodes)])
  assert all(s == sequences[0] for s in sequences)  # none of these change the tokens


def test_completion_limit_cuts_turns(model, toy_tokenizer, pool, tasks):
  """A turn that never closes its cell stops at exactly `completion_limit` tokens."""
  endless = "print(" + "1 + " * 400 + "1)"
  result = _engine(model, toy_tokenizer, pool).run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0),
                                                   forcer=_script(toy_tokenizer, {"*": [endless] * 3}))
  trees = result.trees
  assert trees.steps.tolist() == [3]
  assert trees.tokens_generated.tolist() == [3 * 48]
  assert _statuses(trees, 0) == ["error"] * 3  # the cut cell is a syntax error, shown to the node


def test_shared_tree_budget_ends_the_whole_tree(model, toy_tokenizer, pool, tasks):
  launch = "a, b = await asyncio.gather(launch_subagent({'m1_i1': 1}), launch_subagent({'m2_i1': 1}))"
  script = {(): [launch, "print(1)", "print(2)"], "*": ["print(1)", "print(2)", "print(3)"]}
  engine = _engine(model, toy_tokenizer, pool, tree_step_budget=4)
  trees = engine.run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0),
                     forcer=_script(toy_tokenizer, script)).trees
  assert trees.num_nodes == 3
  assert trees.steps.sum() <= 4 + trees.num_nodes  # the round that hit the budget may finish its turns
  assert np.all(trees.end_reason == EndReason.TREE_BUDGET)
  assert engine.num_busy_slots() == 0


def test_linear_baseline_has_no_delegation(model, toy_tokenizer, pool, tasks):
  """delegation=False: no launch_subagent in the prompt or the namespace; all else identical. The engine
  tells the pool its limits per run, so one pool serves delegating and linear engines alike."""
  engine = _engine(model, toy_tokenizer, pool, delegation=False)
  trees = engine.run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(0), forcer=_script(
      toy_tokenizer, {"*": ["r = await launch_subagent({'m1_i1': 1})", "finish('x')"]})).trees
  assert trees.num_nodes == 1 and trees.num_children[0] == 0
  assert "launch_subagent" in trees.records[0]["turns"][0]["observation"]  # NameError text
  assert _statuses(trees, 0) == ["error", "finished"]
  prompt = toy_tokenizer.decode(trees.node_sequence(0)[0][:600].tolist())
  assert "Delegation" not in prompt


def test_engine_samples_from_a_copy_in_the_compute_dtype(toy_tokenizer, pool, tasks):
  """float32 master weights with bfloat16 compute: the engine holds a bfloat16 copy and samples exactly
  what the master weights would (every layer casts its weights to the compute dtype anyway)."""
  config = ModelConfig(vocab_size=toy_tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, head_dim=16, intermediate_size=64, dtype="bfloat16")
  master = Transformer(config, rngs=nnx.Rngs(1))
  engine = _engine(master, toy_tokenizer, pool, completion_limit=24, max_steps_per_node=2)
  master_leaves = jax.tree.leaves(nnx.state(master))
  copy_leaves = jax.tree.leaves(engine.params)
  assert all(leaf.dtype == jax.numpy.float32 for leaf in master_leaves)
  assert all(leaf.dtype == jax.numpy.bfloat16 for leaf in copy_leaves)
  for full, half in zip(master_leaves, copy_leaves):
    np.testing.assert_array_equal(np.asarray(full.astype(jax.numpy.bfloat16)), np.asarray(half))
  # The same rollout from a model whose weights are stored in bfloat16 to begin with.
  stored_half = nnx.merge(nnx.graphdef(master), engine.params)
  other = _engine(stored_half, toy_tokenizer, pool, completion_limit=24, max_steps_per_node=2)
  runs = [e.run(ENV_NAME, ENV_CONFIG, tasks[:1], 1, jax.random.key(3)).trees for e in (engine, other)]
  np.testing.assert_array_equal(runs[0].tokens, runs[1].tokens)
  np.testing.assert_array_equal(runs[0].sampler_log_probs, runs[1].sampler_log_probs)
  assert runs[0].tokens_generated.sum() > 0


def test_prefill_in_query_blocks_gives_the_same_rollout(model, toy_tokenizer, pool, tasks):
  """Blocks of 16 queries (prompts are hundreds of tokens) change the prefill's memory, not what is sampled."""
  runs = []
  for chunk in (0, 16):
    engine = _engine(model, toy_tokenizer, pool, completion_limit=24, max_steps_per_node=2,
                     prefill_attention_chunk_size=chunk)
    runs.append(engine.run(ENV_NAME, ENV_CONFIG, tasks, 2, jax.random.key(5)).trees)
  np.testing.assert_array_equal(runs[0].tokens, runs[1].tokens)
  np.testing.assert_allclose(runs[0].sampler_log_probs, runs[1].sampler_log_probs, atol=1e-5, rtol=0)
  assert runs[0].tokens_generated.sum() > 0


def test_negative_prefill_attention_chunk_is_rejected():
  with pytest.raises(ValueError, match=r"prefill_attention_chunk_size=-1 must be an integer >= 0"):
    RolloutConfig(prefill_attention_chunk_size=-1)


def test_a_node_continues_the_longest_shared_prefix_it_runs_past():
  prefixes = [(1, 2), (1, 2, 3, 4), (7,)]
  assert _matching_prefix([1, 2, 3, 4, 5], prefixes) == 1
  assert _matching_prefix([1, 2, 3, 4], prefixes) == 0  # must run past a prefix: its last token is pending
  assert _matching_prefix([7, 1], prefixes) == 2
  assert _matching_prefix([2, 1, 3], prefixes) is None
  assert _matching_prefix([1, 2, 3], None) is None
