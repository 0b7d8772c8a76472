"""Tests of chained research questions: seeded walks, tiers, the solvability and single-search filters."""
import pytest

from rao_jax.envs.chained_research import facts, scoring
from rao_jax.envs.chained_research.graph import get_graph
from rao_jax.envs.chained_research.questions import (
    DIFFICULTIES, PRESETS, Task, build_split, build_splits, question_key, single_search_answers,
    start_descriptions, sub_question_answers)

PRESET = PRESETS["tiny"]


@pytest.fixture(scope="module")
def splits():
  return build_splits("tiny")


def test_splits_are_deterministic_from_the_seed(splits):
  again, _ = build_split(PRESET, "val", frozenset(t.question for t in splits["train"]))
  assert again == splits["val"]
  assert not {t.question for t in splits["train"]} & {t.question for t in splits["val"]}


def test_the_rl_split_asks_about_a_third_graph(splits):
  """"rl" holds training questions over a graph that neither train (the warm start's) nor val shares, so
  RL on it cannot be served by recalling facts the warm start saw; adding it left val as it was."""
  graphs = {split: get_graph(PRESET.corpus.graph, split) for split in ("train", "val", "rl")}
  facts_of = {split: {(e.name, tuple(sorted(e.attributes))) for e in g.entities.values()}
              for split, g in graphs.items()}
  assert not facts_of["rl"] & facts_of["train"] and not facts_of["rl"] & facts_of["val"]
  assert len(splits["rl"]) == len(DIFFICULTIES) * PRESET.questions.train_per_difficulty
  for task in splits["rl"]:
    assert task.split == "rl" and all(hop.entity in graphs["rl"].entities for hop in task.hops)
  assert build_split(PRESET, "rl")[0] == splits["rl"]
  with pytest.raises(ValueError, match="unknown split 'test'"):
    build_split(PRESET, "test")


def test_every_tier_is_full_and_hops_match_the_tier(splits):
  for split, tasks in splits.items():
    per = PRESET.questions.per_difficulty(split)
    assert [t.difficulty for t in tasks] == [d for d in DIFFICULTIES for _ in range(per)]
    for task in tasks:
      assert task.difficulty == f"{task.num_hops}hop" and len(task.hops) == task.num_hops + 2
      assert task.answers == task.hops[-1].answers and task.split == split
      assert Task.from_dict(task.to_dict()) == task


def test_each_hop_names_the_previous_hops_answer(splits):
  for task in splits["val"]:
    for previous, hop in zip(task.hops, task.hops[1:]):
      assert previous.answers[0] in hop.question and hop.entity == previous.answers[0]


def test_start_entities_are_described_uniquely(splits):
  graph = get_graph(PRESET.corpus.graph, "val")
  descriptions = start_descriptions(graph)
  for task in splits["val"]:
    start = graph.entities[task.hops[0].answers[0]]
    attributes = descriptions[start.name]
    same = [e for e in graph.of_kind(start.kind) if all(e.attribute(a) == start.attribute(a) for a in attributes)]
    assert same == [start]
    assert facts.describe(start, attributes) in task.question


def test_no_question_is_answered_by_a_single_search(splits):
  for split, tasks in splits.items():
    index = PRESET.corpus.index(split)
    for task in tasks:
      assert not single_search_answers(task, index, PRESET.questions.single_search_k, PRESET.corpus.snippet_chars)
      hits = index.search(task.question, 5, PRESET.corpus.snippet_chars)
      assert not any(scoring.mentions(f"{h.page.title} {h.snippet}", task.answers) for h in hits)


def test_every_hop_is_found_by_searching_its_sub_question(splits):
  index = PRESET.corpus.index("val")
  for task in splits["val"]:
    for hop in task.hops:
      top = index.search(hop.question, 1, PRESET.corpus.snippet_chars)[0]
      assert top.page.title == hop.entity and scoring.mentions(top.snippet, hop.answers)


def test_sub_question_table_holds_every_hop(splits):
  table = sub_question_answers(get_graph(PRESET.corpus.graph, "val"))
  for task in splits["val"]:
    for hop in task.hops:
      assert table[question_key(hop.question)] == hop.answers
