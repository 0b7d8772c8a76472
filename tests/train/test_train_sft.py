"""The supervised warm start: a suite's expert demonstrations rendered as the rollout engine renders nodes,
loss on the policy's turns only, and a few steps on a tiny model lowering the loss."""
import dataclasses

import numpy as np
import pytest

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus, episode, prompts, turn_format
from rao_jax.agent.chat import Provenance, layout_for
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs.textcraft_synth import tasks as tasks_lib, world as world_lib
from rao_jax.envs.textcraft_synth.suite import TextCraftConfig, TextCraftSuite
from rao_jax.model.config import ModelConfig
from rao_jax.train import sft, warm_start
from rao_jax.train.optimizer import OptimizerConfig

# max_own_crafts=1 makes the delegating expert delegate even on easy tasks.
SUITE = TextCraftSuite(TextCraftConfig(world="small", dataset="small", max_own_crafts=1))
FMT = EpisodeFormat(delegation=True, max_depth=6, max_steps_per_node=25, context_window=2048, prompt_style="full")
DATA = sft.SFTDataConfig(recursive_fraction=1.0, difficulties=("easy",), max_tasks_per_difficulty=2)
FLAT = dataclasses.replace(DATA, recursive_fraction=0.0)


def _sequences(tasks, layout, data, fmt=FMT):
  return sft.build_sft_sequences(SUITE, tasks, layout, data, fmt)


@pytest.fixture(scope="module")
def easy_tasks():
  splits = tasks_lib.build_splits(world_lib.get_world("small"), tasks_lib.TaskConfig(num_train=24, num_val=4))
  return splits["train"]


@pytest.fixture(scope="module")
def layout(easy_tasks, tmp_path_factory):
  """A toy SentencePiece tokenizer trained on the prompts and turns it will encode."""
  texts = list(corpus.builtin_corpus(num_examples=200))
  for task in sft.select_tasks(easy_tasks, DATA):
    parts = SUITE.root_environment(task).prompt_parts(True)
    texts += [prompts.system_prompt(parts, delegation=True), prompts.first_user_turn(parts, step_budget=25)]
    for node in SUITE.demonstrations(task, delegate=True, max_depth=FMT.max_depth):
      texts += episode.demo_texts(node)
  prefix = str(tmp_path_factory.mktemp("sft_tokenizer") / "toy")
  return layout_for(tokenizer_lib.train_sentencepiece(texts, model_prefix=prefix, vocab_size=1024))


def _model_spans(layout, conversation):
  return [layout.tokenizer.decode(conversation.ids[a:b]) for p, a, b in conversation.spans()
          if p == Provenance.MODEL]


@pytest.mark.parametrize("data", [DATA, FLAT], ids=["recursive", "flat"])
def test_sequences_follow_the_engine_layout_with_loss_on_model_turns_only(easy_tasks, layout, data):
  conversations = _sequences(easy_tasks, layout, data)
  tasks = sft.select_tasks(easy_tasks, data)
  assert len(tasks) == 2 and all(t.difficulty == "easy" for t in tasks)
  # The first sequence is the first task's root: its prompt is exactly what the engine prefills.
  parts = SUITE.root_environment(tasks[0]).prompt_parts(True)
  prompt = layout.prompt_ids(prompts.system_prompt(parts, delegation=True),
                             prompts.first_user_turn(parts, step_budget=FMT.max_steps_per_node))
  assert conversations[0].ids[:len(prompt)] == prompt
  assert conversations[0].provenance[len(prompt)] == Provenance.MODEL
  for conversation in conversations:
    spans = conversation.spans()
    assert spans[0][0] == Provenance.ENV and spans[-1][0] == Provenance.MODEL  # ends with its finish turn
    turns = _model_spans(layout, conversation)
    assert all(t.startswith(turn_format.THOUGHT_OPEN) and t.endswith(turn_format.CODE_CLOSE) for t in turns)
    assert "finish(" in turns[-1]
    for index, (p, a, b) in enumerate(spans[2::2], start=1):  # observations between the turns
      text = layout.tokenizer.decode(conversation.ids[a:b])
      assert turn_format.observation_header(index) in text and text.endswith(tokenizer_lib.TOY_ASSISTANT)
    mask = conversation.loss_mask()
    assert mask.sum() == sum(b - a for p, a, b in spans if p == Provenance.MODEL)
    assert np.isnan(conversation.sampler_logprobs()[mask]).all()


def _delegating(layout, conversations) -> int:
  return sum(any("launch_subagent" in t for t in _model_spans(layout, c)) for c in conversations)


def test_recursive_fraction_picks_the_solver_of_each_tree(easy_tasks, layout):
  flat = _sequences(easy_tasks, layout, FLAT)
  assert len(flat) == 2 and _delegating(layout, flat) == 0  # one node per task, never delegating
  recursive = _sequences(easy_tasks, layout, DATA)
  assert len(recursive) > 2 and _delegating(layout, recursive) >= 1  # children are sequences too
  # In between, each task and each augmented copy draws its expert (seeded by config.seed).
  mixed = dataclasses.replace(DATA, recursive_fraction=0.3, augmented_copies=29)
  draws = np.asarray([[mixed.delegates(task, copy, "easy") for copy in range(30)] for task in range(2)])
  reseeded = dataclasses.replace(mixed, seed=1)
  assert 0.1 < draws.mean() < 0.5 and (draws != [[reseeded.delegates(t, c, "easy") for c in range(30)] for t in range(2)]).any()
  tasks = sft.select_tasks(easy_tasks, DATA)
  per_tree = [_delegating(layout, _sequences([task], layout, DATA)) for task in tasks]
  conversations = _sequences(easy_tasks, layout, mixed)
  assert _delegating(layout, conversations) == int(draws.sum(axis=1) @ per_tree)


def test_recursive_difficulties_keep_the_other_tiers_flat(easy_tasks):
  both = dataclasses.replace(DATA, difficulties=("easy", "medium"), max_tasks_per_difficulty=3,
                             recursive_fraction=1.0, augmented_copies=1)
  # Two demonstrations a task (the tree as written and one renamed copy), in select_tasks' order.
  tiers = lambda config: [(task.difficulty, delegate) for task, (delegate, _) in
                          zip([t for t in sft.select_tasks(easy_tasks, config) for _ in range(2)],
                              sft.demonstration_trees(SUITE, easy_tasks, config, FMT))]
  every_tier = tiers(both)
  assert {d for d, _ in every_tier} == {"easy", "medium"} and all(delegate for _, delegate in every_tier)
  medium_only = dataclasses.replace(both, recursive_difficulties=("medium",))
  assert all(delegate == (difficulty == "medium") for difficulty, delegate in tiers(medium_only))
  # Within the named tiers, a task's draw is the one it had without the option (same seed, same index).
  mixed = dataclasses.replace(both, recursive_fraction=0.5, augmented_copies=9)
  for index, task in enumerate(sft.select_tasks(easy_tasks, mixed)):
    for copy in range(10):
      expected = mixed.delegates(index, copy, task.difficulty) and task.difficulty == "medium"
      assert dataclasses.replace(mixed, recursive_difficulties=("medium",)).delegates(
          index, copy, task.difficulty) == expected


def test_keep_originals_false_demonstrates_only_the_renamed_copies(easy_tasks, layout):
  tasks = sft.select_tasks(easy_tasks, FLAT)
  with_originals = dataclasses.replace(FLAT, augmented_copies=2)
  copies_only = dataclasses.replace(with_originals, keep_originals=False)
  text = lambda trees: [[(n.goal, n.turns) for n in nodes] for _, nodes in trees]
  trees = text(sft.demonstration_trees(SUITE, easy_tasks, copies_only, FMT))
  originals = text((False, SUITE.demonstrations(t, delegate=False, max_depth=FMT.max_depth)) for t in tasks)
  everything = text(sft.demonstration_trees(SUITE, easy_tasks, with_originals, FMT))
  assert len(trees) == 2 * len(tasks) and trees == [t for t in everything if t not in originals]
  original_text = {layout.tokenizer.decode(c.ids) for c in _sequences(easy_tasks, layout, FLAT)}
  renamed_text = {layout.tokenizer.decode(c.ids) for c in _sequences(easy_tasks, layout, copies_only)}
  assert len(renamed_text) == 2 * len(tasks) and not original_text & renamed_text


def test_nodes_beyond_the_engine_limits_are_cut_to_what_the_engine_could_produce(easy_tasks, layout):
  two_cells = dataclasses.replace(FMT, max_steps_per_node=2)
  cut = _sequences(easy_tasks, layout, FLAT, two_cells)
  tasks = sft.select_tasks(easy_tasks, FLAT)
  assert len(cut) == len(tasks)
  for conversation, task in zip(cut, tasks):
    (node,) = SUITE.demonstrations(task, delegate=False, max_depth=FMT.max_depth)
    whole = episode.render_demo_node(layout, node, two_cells)
    assert len(_model_spans(layout, conversation)) == 2 < len(_model_spans(layout, whole))
    assert conversation.ids == whole.ids[:len(conversation)] and conversation.provenance[-1] == Provenance.ENV
  full = _sequences(easy_tasks, layout, FLAT)
  window = len(full[0]) - 10
  short = _sequences(easy_tasks, layout, FLAT, dataclasses.replace(FMT, context_window=window))
  assert all(len(c) <= window for c in short) and short[0].ids == full[0].ids[:window]


def test_bad_data_configs_raise():
  with pytest.raises(ValueError, match=r"recursive_difficulties.*\['hard'\].*not among"):
    sft.SFTDataConfig(difficulties=("easy", "medium"), recursive_difficulties=("medium", "hard"))
  with pytest.raises(ValueError, match="recursive_fraction=1.5"):
    sft.SFTDataConfig(recursive_fraction=1.5)
  with pytest.raises(ValueError, match="difficulties"):
    sft.SFTDataConfig(difficulties=())
  with pytest.raises(ValueError, match="augmented_copies=-1"):
    sft.SFTDataConfig(augmented_copies=-1)
  with pytest.raises(ValueError, match="keep_originals"):
    sft.SFTDataConfig(augmented_copies=0, keep_originals=False)
  with pytest.raises(ValueError, match="transcript_style='verbose'"):
    TextCraftConfig(transcript_style="verbose")
  with pytest.raises(ValueError, match="info_style='long'"):
    TextCraftConfig(info_style="long")


def test_a_few_sft_steps_lower_the_loss(easy_tasks, layout, make_model):
  conversations = _sequences(easy_tasks, layout, FLAT)
  config = ModelConfig(vocab_size=layout.tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, head_dim=16, intermediate_size=64)
  sft_config = sft.SFTConfig(optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0), num_steps=8,
                             rows_per_batch=2, row_length=1280, num_micro_batches=2, logits_chunk_size=256)
  model, losses = sft.train_sft(make_model(config), conversations, sft_config)
  assert losses.shape == (8,) and np.isfinite(losses).all()
  assert losses[-2:].mean() < losses[0] - 1.0, losses
  assert model.config == config


def test_rows_shorter_than_every_prompt_raise_instead_of_looping(easy_tasks, layout, make_model):
  conversations = _sequences(easy_tasks, layout, FLAT)
  config = ModelConfig(vocab_size=layout.tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, head_dim=16, intermediate_size=64)
  prompt_length = min(int(np.argmax(c.loss_mask())) for c in conversations)
  sft_config = sft.SFTConfig(num_steps=2, rows_per_batch=1, row_length=prompt_length)  # truncated to prompts
  with pytest.raises(ValueError, match=f"row_length={prompt_length} tokens"):
    sft.train_sft(make_model(config), conversations, sft_config)


def test_minimal_prompts_render_the_engine_prompt(easy_tasks, layout):
  minimal_fmt = dataclasses.replace(FMT, prompt_style="minimal")
  full, minimal = (_sequences(easy_tasks, layout, DATA, f)[0] for f in (FMT, minimal_fmt))
  parts = SUITE.root_environment(sft.select_tasks(easy_tasks, DATA)[0]).prompt_parts(True)
  budget = FMT.max_steps_per_node
  prompt = layout.prompt_ids(prompts.system_prompt(parts, delegation=True, style="minimal"),
                             prompts.first_user_turn(parts, step_budget=budget, style="minimal"))
  assert minimal.ids[:len(prompt)] == prompt
  assert minimal.provenance[len(prompt)] == Provenance.MODEL
  assert _model_spans(layout, minimal) == _model_spans(layout, full)  # same turns, shorter prompt
  assert len(minimal) < len(full) - 300


def test_tokenizer_with_whole_item_names(easy_tasks, tmp_path):
  config = warm_start.TokenizerConfig(vocab_size=1024, corpus_examples=50, transcript_tasks=1,
                                      whole_words=True)
  tokenizer = warm_start.build_tokenizer(str(tmp_path), config, SUITE, easy_tasks, FMT)
  items = tuple(world_lib.get_world("small").items)
  assert len({tokenizer.token_id(item) for item in items}) == len(items)
  goal = f"Craft the following items: 2x {items[-1]}"
  assert tokenizer.decode(tokenizer.encode(goal)) == goal
  # The same settings reuse the trained file; another setting trains its own instead of reusing it.
  again = warm_start.build_tokenizer(str(tmp_path), config, SUITE, easy_tasks, FMT)
  assert again.model_file == tokenizer.model_file
  split_names = warm_start.build_tokenizer(str(tmp_path), dataclasses.replace(config, whole_words=False),
                                           SUITE, easy_tasks, FMT)
  assert split_names.model_file != tokenizer.model_file and len(split_names.encode(goal)) > len(
      tokenizer.encode(goal))


def test_augmented_copies_add_renamed_trees(easy_tasks, layout):
  plain = _sequences(easy_tasks, layout, FLAT)
  data = dataclasses.replace(FLAT, augmented_copies=2)
  renamed = _sequences(easy_tasks, layout, data)
  assert len(renamed) == 3 * len(plain)  # one flat node per tree and copy
  original, copy_a, copy_b = renamed[:3]
  assert original.ids == plain[0].ids
  texts = [layout.tokenizer.decode(c.ids) for c in (original, copy_a, copy_b)]
  assert len(set(texts)) == 3 and all(t.count("Craft the following items") == 1 for t in texts)
  assert _sequences(easy_tasks, layout, data)[1].ids == copy_a.ids  # seeded
