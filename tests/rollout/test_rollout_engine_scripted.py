"""The engine driven by a scripted policy: expert transcripts forced through the real decode path,
interpreter and environment."""
import jax
import numpy as np
import pytest
from flax import nnx

from rao_jax.agent import episode
from rao_jax.agent.chat import layout_for
from rao_jax.agent.interpreter.pool import InterpreterConfig, InterpreterPool
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers
from rao_jax.envs.textcraft_synth.suite import TextCraftConfig, TextCraftSuite
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.engine import RolloutEngine
from rao_jax.rollout.metrics import batch_metrics, parallel_fraction
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.rollout.trees import EndReason

ENV_NAME, ENV_CONFIG = "textcraft_synth", {"world": "small"}


def _model(vocab_size: int) -> Transformer:
  config = ModelConfig(vocab_size=vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, head_dim=16, intermediate_size=64)
  return Transformer(config, rngs=nnx.Rngs(0))


def _engine_config(num_slots: int, prompt_style: str = "full") -> RolloutConfig:
  return RolloutConfig(num_slots=num_slots, context_window=3072, completion_limit=384,
                       max_steps_per_node=25, max_depth=6, decode_steps_per_round=512,
                       prompt_style=prompt_style,
                       prefill_chunk_buckets=(256, 1024), prefill_row_buckets=(num_slots,),
                       sampling=SamplingConfig(temperature=1.0))


def _forcer(tokenizer, transcripts):
  def force(group, path, turn_index):
    node = transcripts[group]
    for child in path:
      node = node.children[child]
    if turn_index >= len(node.turns):
      return None
    return tokenizer.encode(episode.assistant_text(node.turns[turn_index]))
  return force


def _shape(transcript):
  return (len(transcript.turns), tuple(_shape(c) for c in transcript.children))


def _engine_shape(records, turns_of, index):
  return (turns_of[index], tuple(_engine_shape(records, turns_of, c) for c in records[index]["children"]))


@pytest.mark.e2e
@pytest.mark.parametrize("prompt_style", ["full", "minimal"])
def test_expert_trees_replayed_through_the_engine(toy_tokenizer, small_tasks, prompt_style):
  tasks = small_tasks["easy"][:2] + small_tasks["medium"][:1]
  transcripts = [solvers.solve(env_lib.make_root_environment(ENV_CONFIG, t.to_dict()), solvers.RECURSIVE)
                 for t in tasks]
  assert any(t.children for t in transcripts)  # the sample exercises delegation
  config = _engine_config(num_slots=8, prompt_style=prompt_style)
  with InterpreterPool(InterpreterConfig()) as pool:
    engine = RolloutEngine(_model(toy_tokenizer.vocab_size), layout_for(toy_tokenizer), pool, config)
    result = engine.run(ENV_NAME, ENV_CONFIG, [t.to_dict() for t in tasks], samples_per_task=2,
                        rng=jax.random.key(0), forcer=_forcer(toy_tokenizer, transcripts))
  trees = result.trees
  roots = trees.roots()
  assert len(roots) == 6
  np.testing.assert_array_equal(trees.success[roots], 1.0)
  assert np.all(trees.end_reason == EndReason.FINISHED)
  np.testing.assert_array_equal(trees.success, 1.0)  # every delegated sub-goal succeeded too
  # Tree shapes (turns per node, children in launch order) equal the expert's.
  for root in roots:
    expected = _shape(transcripts[int(trees.group[root])])
    assert _engine_shape(trees.records, trees.steps, int(root)) == expected
  # Children launched by one gather cell overlap in decode rounds.
  siblings = {}
  for i in np.flatnonzero(trees.parent >= 0):
    siblings.setdefault((int(trees.parent[i]), int(trees.launch_cell[i])), []).append(i)
  parallel_groups = [g for g in siblings.values() if len(g) > 1]
  for group in parallel_groups:
    assert max(trees.first_round[group]) <= min(trees.last_round[group])
  if parallel_groups:
    assert parallel_fraction(trees) > 0
  # The loss mask covers exactly the forced assistant turns, with finite sampler log-probs.
  for i in range(trees.num_nodes):
    tokens, mask, log_probs = trees.node_sequence(i)
    assert mask.sum() == trees.tokens_generated[i]
    assert np.all(np.isfinite(log_probs)) and np.all(log_probs[mask] <= 0)
  # The warm start's sequences (the suite's demonstrations through the one renderer) are token for
  # token what the engine fed the model: same prompts, and the sandbox prints what the solvers'
  # trusted runner printed.
  layout = layout_for(toy_tokenizer)
  suite = TextCraftSuite(TextCraftConfig(world="small", dataset="small"))
  for root in roots:
    task = tasks[int(trees.group[root])]
    transcript = transcripts[int(trees.group[root])]
    demos = suite.demonstrations(task, delegate=True, max_depth=config.max_depth)
    demo_of = {id(node): demo for node, demo in zip(transcript.nodes(), demos, strict=True)}
    pairs = [(transcript, int(root))]
    while pairs:
      node, row = pairs.pop()
      expected = episode.render_demo_node(layout, demo_of[id(node)], config.episode)
      tokens, mask, _ = trees.node_sequence(row)
      assert tokens.tolist() == expected.ids
      np.testing.assert_array_equal(mask, expected.loss_mask())
      pairs.extend(zip(node.children, trees.records[row]["children"]))
  metrics = batch_metrics(trees)
  assert metrics["success"] == 1.0
  assert 0 < result.timings.slot_utilisation <= 1
  assert result.compiled_programs["decode"] <= 1  # one decode program whatever the step budgets
