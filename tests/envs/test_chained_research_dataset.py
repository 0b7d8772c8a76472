"""Tests of the chained research tfds dataset, stats CLI, suite contract and training configs."""
import importlib.util
import json
import os

import pytest

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus, episode, turn_format
from rao_jax.agent.chat import layout_for
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs import registry
from rao_jax.envs.chained_research import dataset, graph, stats
from rao_jax.envs.chained_research.graph import COUNTRIES
from rao_jax.envs.chained_research.questions import build_splits
from rao_jax.envs.chained_research.suite import ChainedResearchConfig, ChainedResearchSuite
from rao_jax.errors import FieldError
from rao_jax.train.settings import settings_from_config

_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "chained_research.py")
COMPACT = ChainedResearchConfig(result_style="compact", transcript_style="compact")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _config(preset):
  spec = importlib.util.spec_from_file_location("chained_research_config", _CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config(preset)
  if preset == "qwen3_4b":
    cfg.warm_start.checkpoint = "/models/Qwen3-4B"
  return cfg


def test_tfds_round_trip(data_dir):
  splits = build_splits("tiny")
  assert set(splits) == {"train", "val", "rl"}
  for split in splits:
    assert dataset.load_tasks("tiny", split, data_dir) == splits[split]
  builder = dataset.ChainedResearch(config="tiny", data_dir=data_dir)
  assert builder.info.file_format.value == "array_record"
  assert builder.info.splits["val"].num_examples == len(splits["val"])
  with pytest.raises(ValueError, match="unknown split"):
    dataset.load_tasks("tiny", "test", data_dir)
  with pytest.raises(ValueError, match="unknown config"):
    dataset.load_tasks("huge", "val", data_dir)


def test_suite_contract(data_dir, tmp_path):
  suite = registry.get_suite_class("chained_research")(COMPACT)
  assert isinstance(suite, ChainedResearchSuite)
  tasks = suite.load_tasks("train", data_dir)
  json.dumps([t.to_dict() for t in tasks[:20]]) and json.dumps(suite.env_config)
  root = registry.make_root_environment(suite.env_name, suite.env_config, tasks[0].to_dict())
  assert root.prompt_parts(True).goal == suite.root_environment(tasks[0]).prompt_parts(True).goal
  layout = layout_for(tokenizer_lib.train_sentencepiece(corpus.builtin_corpus(200), model_prefix=str(tmp_path / "sp"),
                                                        vocab_size=2048, whole_words=suite.whole_words()))
  fmt = EpisodeFormat(delegation=True, max_depth=4, max_steps_per_node=12, context_window=4096,
                      prompt_style="minimal")
  for task in tasks[:: len(tasks) // 4]:
    for delegate in (False, True):
      nodes = suite.demonstrations(task, delegate=delegate, max_depth=fmt.max_depth, variant="2/1")
      assert nodes[0].depth == 0 and (delegate or len(nodes) == 1)
      for node in nodes:
        text = layout.tokenizer.decode(episode.render_demo_node(layout, node, fmt).ids)
        assert node.goal.strip() in text and turn_format.CODE_CLOSE in text
        assert node.turns[-1].output is None and "finish(" in node.turns[-1].code
  assert len(set(suite.whole_words())) == len(suite.whole_words()) and set(COUNTRIES) <= set(suite.whole_words())
  # A question's description ("the poet born in 1851") is copied word for word: its words are single pieces.
  for word in graph.PROFESSIONS + graph.EVENT_KINDS + graph.MONTHS:
    assert len(layout.tokenizer.encode(word)) == 1, word
  names = [hop.entity for hop in tasks[0].hops if " " not in hop.entity]
  assert all(len(layout.tokenizer.encode(name)) == 1 for name in names)
  # The tiny corpus's numbers are single pieces: a year or a length is copied as one token.
  for number in ("1851", "1,240", "2050", "10", "28"):
    assert len(layout.tokenizer.encode(number)) == 1, number
  assert [layout.tokenizer.decode([i]) for i in layout.tokenizer.encode("1,240 km")][0] == "1,240"


@pytest.mark.parametrize("bad, field", [(dict(dataset="huge"), "dataset"), (dict(result_style="long"), "result_style"),
                                        (dict(transcript_style="compact"), "transcript_style"),
                                        (dict(expert_max_results=0), "expert_max_results"),
                                        (dict(expert_max_results=True), "expert_max_results"),
                                        (dict(name_tokens="pieces"), "name_tokens")])
def test_suite_config_is_checked(bad, field):
  with pytest.raises(FieldError) as error:
    ChainedResearchConfig(**bad)
  assert error.value.field == field


@pytest.mark.parametrize("preset", ["tiny", "tiny_flat", "qwen3_4b"])
def test_config_presets_validate(preset):
  settings = settings_from_config(_config(preset))
  assert isinstance(settings.suite(), ChainedResearchSuite)
  assert settings.rollout.delegation == (preset != "tiny_flat")
  assert settings.rollout.max_depth == 4 and settings.policy_update.advantage.bonus_weight == 0.0
  assert settings.policy_update.row_length >= settings.rollout.context_window
  if preset == "qwen3_4b":
    assert settings.rollout.context_window == 8192 and settings.rollout.max_steps_per_node == 25
    assert settings.policy_update.train_step.loss == "cispo" and settings.rollout.prompt_style == "full"
    assert settings.suite().env_config == {"dataset": "paper", "result_style": "full"}
  else:
    assert settings.rollout.prompt_style == "minimal" and settings.model.vocab_size == settings.tokenizer.vocab_size


def test_stats_cli_prints_json(capsys):
  stats.main(["--config", "tiny"])
  summary = json.loads(capsys.readouterr().out)
  val = summary["splits"]["val"]
  assert val["questions"] == 250 and set(val["questions_per_difficulty"].values()) == {50}
  assert val["entities"] == val["pages"] and 0 <= val["single_search_drop_rate"] < 1
