"""The copying probe (rao_jax.train.probe) and the SFT loop's probe hook."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.agent.chat import layout_for
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs.textcraft_synth import tasks as tasks_lib, world as world_lib
from rao_jax.envs.textcraft_synth.renaming import item_name_pattern
from rao_jax.envs.textcraft_synth.suite import TextCraftConfig, TextCraftSuite
from rao_jax.model.config import ModelConfig
from rao_jax.train import probe, sft, warm_start
from rao_jax.train.optimizer import OptimizerConfig

FLAT = sft.SFTDataConfig(recursive_fraction=0.0, difficulties=("easy",), max_tasks_per_difficulty=3)
SUITE = TextCraftSuite(TextCraftConfig(world="small", dataset="small"))
FMT = EpisodeFormat(delegation=True, max_depth=6, max_steps_per_node=25, context_window=2048,
                    prompt_style="minimal")
ITEMS = tuple(world_lib.get_world("small").items)


@pytest.fixture(scope="module")
def easy_tasks():
  return tasks_lib.build_splits(world_lib.get_world("small"), tasks_lib.TaskConfig(num_train=24, num_val=4))["train"]


@pytest.fixture(scope="module", params=[True, False], ids=["whole_words", "split_item_names"])
def conversations(request, easy_tasks, tmp_path_factory):
  config = warm_start.TokenizerConfig(vocab_size=1024, corpus_examples=100, transcript_tasks=2,
                                      whole_words=request.param)
  tokenizer = warm_start.build_tokenizer(str(tmp_path_factory.mktemp("probe_tokenizer")), config, SUITE,
                                         easy_tasks, FMT)
  tasks = sft.select_tasks(easy_tasks, FLAT)
  return tasks, tokenizer, sft.build_sft_sequences(SUITE, easy_tasks, layout_for(tokenizer), FLAT, FMT)


def test_token_kinds_split_the_policy_tokens(conversations):
  tasks, tokenizer, sequences = conversations
  assert len(sequences) == len(tasks)
  for task, conversation in zip(tasks, sequences):
    ids, policy = conversation.token_ids(), conversation.loss_mask()
    kinds = probe.token_kinds(ids, policy, tokenizer, item_name_pattern(ITEMS))
    assert set(kinds) == set(probe.TOKEN_KINDS)
    total = sum(mask.astype(int) for mask in kinds.values())
    np.testing.assert_array_equal(total, policy.astype(int))  # disjoint, and together the policy's tokens
    goal = np.flatnonzero(kinds["goal_item"])
    assert tokenizer.decode(ids[goal].tolist()).strip() == next(iter(task.targets))
    assert np.all(np.diff(goal) == 1) and goal[0] > np.flatnonzero(policy)[0]  # one run, after the first turn
    later = tokenizer.decode(ids[kinds["later_items"]].tolist())
    assert kinds["later_items"].sum() > 0 and any(item in later for item in ITEMS)
    assert not any(item in tokenizer.decode(ids[kinds["other"]].tolist()) for item in ITEMS if len(item) > 4)


class _Oracle(nnx.Module):
  """Predicts `ids` teacher-forced: logits at t put all mass on ids[t + 1], except at `wrong` positions."""

  def __init__(self, ids: np.ndarray, vocab_size: int, wrong: np.ndarray):
    targets = np.concatenate([ids[1:], [0]])
    targets = np.where(wrong, (targets + 1) % vocab_size, targets)
    self.logits = nnx.Variable(jax.nn.one_hot(targets, vocab_size) * 10.0)  # [T, V]

  def __call__(self, tokens: jax.Array, positions: jax.Array):
    padded = jnp.zeros((tokens.shape[1], self.logits.shape[-1])).at[:self.logits.shape[0]].set(self.logits[...])
    return padded[None], None


def test_accuracy_is_counted_at_the_predicted_token(conversations):
  _, tokenizer, sequences = conversations
  conversation = sequences[0]
  ids = conversation.token_ids()
  pattern = item_name_pattern(ITEMS)
  kinds = probe.token_kinds(ids, conversation.loss_mask(), tokenizer, pattern)
  perfect = probe.teacher_forced_accuracy(_Oracle(ids, 1024, np.zeros(len(ids), bool)), [conversation],
                                          tokenizer, pattern)
  assert all(perfect.accuracy(kind) == 1.0 for kind in probe.TOKEN_KINDS)
  assert perfect.total == {kind: int(mask.sum()) for kind, mask in kinds.items()}
  # Wrong exactly where the goal item is predicted (the position before each of its tokens).
  wrong = np.concatenate([kinds["goal_item"][1:], [False]])
  missed = probe.teacher_forced_accuracy(_Oracle(ids, 1024, wrong), [conversation], tokenizer, pattern)
  assert missed.accuracy("goal_item") == 0.0
  assert missed.accuracy("later_items") == 1.0 and missed.accuracy("other") == 1.0


def test_sft_probe_sees_the_model_every_k_steps(conversations, make_model):
  _, tokenizer, sequences = conversations
  config = ModelConfig(vocab_size=1024, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16,
                       intermediate_size=64)
  sft_config = sft.SFTConfig(optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0), num_steps=5,
                             rows_per_batch=1, row_length=1024)
  initial = make_model(config)
  initial_embedding = np.asarray(initial.embed.table[...]).copy()
  seen = []

  def record(steps_done, model):
    seen.append((steps_done, np.asarray(model.embed.table[...]).copy()))

  model, _ = sft.train_sft(initial, sequences, sft_config, probe=record, probe_every=2)
  assert [step for step, _ in seen] == [0, 2, 4, 5]
  np.testing.assert_array_equal(seen[0][1], initial_embedding)
  np.testing.assert_array_equal(seen[-1][1], np.asarray(model.embed.table[...]))
  assert not np.array_equal(seen[1][1], seen[0][1])
  with pytest.raises(ValueError, match="probe_every=0"):
    sft.train_sft(initial, sequences, dataclasses.replace(sft_config, num_steps=1), probe=record)
