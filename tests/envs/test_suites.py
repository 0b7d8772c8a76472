"""Every registered environment suite keeps the contract the generic trainer relies on
(`rao_jax.envs.suite`): deterministic task splits of its difficulties, JSON-like tasks its root
factory accepts, and demonstrations that render through the engine's renderer and solve their task."""
import json

import pytest

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus, episode, turn_format
from rao_jax.agent.chat import layout_for
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs import registry
from rao_jax.envs.suite import Suite, check_difficulties
from rao_jax.envs.textcraft_synth.suite import TextCraftConfig

CONFIGS = {
    "textcraft_synth": TextCraftConfig(world="toy", dataset="toy", info_style="compact",
                                       transcript_style="compact", max_own_crafts=1, crafts_per_cell=2),
    "diagnostic_choice": None,
    "diagnostic_relay": None,
}
FMT = EpisodeFormat(delegation=True, max_depth=12, max_steps_per_node=12, context_window=4096,
                    prompt_style="minimal")


def _suite(name) -> Suite:
  suite_class = registry.get_suite_class(name)
  return suite_class(CONFIGS[name] or suite_class.Config())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("suite_data"))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
  texts = corpus.builtin_corpus(300)
  prefix = str(tmp_path_factory.mktemp("suite_tokenizer") / "sp")
  return layout_for(tokenizer_lib.train_sentencepiece(texts, model_prefix=prefix, vocab_size=1024))


def test_every_builtin_suite_is_registered():
  assert set(CONFIGS) <= set(registry.suite_names())
  with pytest.raises(KeyError, match="unknown environment suite 'chess'"):
    registry.get_suite_class("chess")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_task_splits_are_deterministic_and_json_like(name, data_dir):
  suite = _suite(name)
  for split in suite.splits:
    tasks = suite.load_tasks(split, data_dir)
    assert tasks and [t.to_dict() for t in tasks] == [t.to_dict() for t in suite.load_tasks(split, data_dir)]
    assert {t.difficulty for t in tasks} <= set(suite.difficulties)
    json.dumps([t.to_dict() for t in tasks[:20]])
    json.dumps(suite.env_config)
    root = registry.make_root_environment(suite.env_name, suite.env_config, tasks[0].to_dict())
    assert root.prompt_parts(True).goal == suite.root_environment(tasks[0]).prompt_parts(True).goal


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_demonstrations_render_and_solve_their_task(name, data_dir, layout):
  suite = _suite(name)
  tasks = suite.load_tasks("train", data_dir)[:6]
  rendered = 0
  for task in tasks:
    for delegate in (False, True):
      nodes = suite.demonstrations(task, delegate=delegate, max_depth=FMT.max_depth)
      if nodes is None:
        continue
      assert nodes[0].depth == 0 and all(n.depth <= FMT.max_depth for n in nodes)
      assert delegate or all(n.depth == 0 for n in nodes)
      for node in nodes:
        conversation = episode.render_demo_node(layout, node, FMT)
        text = layout.tokenizer.decode(conversation.ids)
        assert node.goal.strip() in text and turn_format.CODE_CLOSE in text
        assert node.turns[-1].output is None and "finish(" in node.turns[-1].code  # ends by finishing
        rendered += 1
  assert rendered


def test_augmented_copies_are_seeded_variants_of_the_same_tree(data_dir):
  suite = _suite("textcraft_synth")
  task = suite.load_tasks("train", data_dir)[3]
  plain = suite.demonstrations(task, delegate=True, max_depth=FMT.max_depth)
  copy = suite.demonstrations(task, delegate=True, max_depth=FMT.max_depth, variant="3/1")
  again = suite.demonstrations(task, delegate=True, max_depth=FMT.max_depth, variant="3/1")
  assert [(n.goal, n.turns) for n in again] == [(n.goal, n.turns) for n in copy]
  assert [len(n.turns) for n in copy] == [len(n.turns) for n in plain] and copy[0].goal != plain[0].goal


def test_difficulties_are_checked_against_the_suite():
  suite_class = registry.get_suite_class("diagnostic_choice")
  assert check_difficulties(suite_class, ["all"], "f") == ("all",)
  with pytest.raises(ValueError, match=r"f=\('hard',\) must be a non-empty subset of \('all',\)"):
    check_difficulties(suite_class, ("hard",), "f")
  with pytest.raises(TypeError, match="takes a DiagnosticConfig"):
    suite_class(TextCraftConfig())
