"""The chained research experts solve every task of the tiny val split, flat and recursive, with cells
executed against the real tools; the recursive expert delegates every hop, one child at a time."""
import pytest

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus
from rao_jax.envs.chained_research import env as env_lib, solvers
from rao_jax.envs.chained_research.graph import KINDS, entity_names, get_graph
from rao_jax.envs.chained_research.questions import PRESETS, SPLITS, build_splits
from rao_jax.envs.chained_research.renaming import EntityRenaming
from rao_jax.envs.chained_research.suite import ChainedResearchConfig, ChainedResearchSuite

STYLES = {"compact": "compact", "spec": "full"}  # transcript style -> result style


@pytest.fixture(scope="module")
def val_tasks():
  return build_splits("tiny")["val"]


def _solve(task, style, delegate, max_depth=4):
  root = env_lib.make_root_environment({"dataset": "tiny", "result_style": STYLES[style]}, task.to_dict())
  return solvers.solve(root, solvers.SolverConfig(delegate=delegate, max_depth=max_depth, style=style))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_flat_expert_solves_every_val_task(val_tasks, style):
  for task in val_tasks:
    nodes = _solve(task, style, delegate=False)
    assert nodes is not None and len(nodes) == 1, task.question
    root = nodes[0]
    assert root.turns[-1].code == f"finish({task.answers[0]!r})" and root.turns[-1].output is None
    assert root.environment.judge(task.answers[0]) == 1.0
    searches = [t for t in root.turns if "search_web(" in t.code]
    assert len(searches) == len(task.hops)
    for turn, hop in zip(searches, task.hops):
      assert repr(hop.question) in turn.code
    if style == "spec":
      assert sum("view_webpage_content(" in t.code for t in root.turns) == len(task.hops)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_recursive_expert_solves_every_val_task_one_hop_per_child(val_tasks, style):
  for task in val_tasks:
    nodes = _solve(task, style, delegate=True)
    assert nodes is not None, task.question
    root, children = nodes[0], nodes[1:]
    assert root.depth == 0 and [c.depth for c in children] == [1] * len(task.hops)
    launches = [t for t in root.turns if "launch_subagent(" in t.code]
    # Sequential: one launch per cell, each naming the previous child's answer.
    assert len(launches) == len(task.hops) and all(t.code.count("launch_subagent(") == 1 for t in launches)
    for index, (child, hop, turn) in enumerate(zip(children, task.hops, launches)):
      assert child.goal.startswith(hop.question + "\nParent goals: " + task.question)
      assert child.environment.judge(hop.answers[0]) == 1.0
      assert repr(hop.answers[0]) in turn.output or hop.answers[0] in turn.output
      # The root writes no name it has read: later goals are f-strings on the previous answer.
      if index:
        assert "{answer}" in turn.code and task.hops[index - 1].answers[0] not in turn.code
      # The child searches its own goal through the variable `question`.
      assert "search_web(question" in child.turns[0].code
      assert child.environment.namespace_variables() == {"question": hop.question}
    assert root.turns[-1].code == "finish(answer)"
    assert root.environment.judge(task.answers[0]) == 1.0


def test_rl_tasks_are_solved_on_their_own_graph():
  """An "rl" task's root searches the rl graph's pages and is judged against its facts: the experts solve
  it, and the answer of the same question on the train graph (if it has one) is not what it accepts."""
  tasks = build_splits("tiny")["rl"]
  for task in tasks[::30]:
    for delegate in (False, True):
      nodes = _solve(task, "compact", delegate=delegate)
      assert nodes is not None and nodes[0].environment.judge(task.answers[0]) == 1.0, task.question
    assert nodes[0].environment.corpus.index is PRESETS["tiny"].corpus.index("rl")


def test_recursive_expert_at_depth_zero_is_flat(val_tasks):
  assert [n.turns for n in _solve(val_tasks[0], "compact", True, max_depth=0)] == [
      n.turns for n in _solve(val_tasks[0], "compact", False)]


def test_observations_are_what_the_tools_return(val_tasks):
  task = val_tasks[3]
  nodes = _solve(task, "compact", delegate=False)
  root = env_lib.make_root_environment({"dataset": "tiny", "result_style": "compact"}, task.to_dict())
  for turn, hop in zip(nodes[0].turns, task.hops):
    assert turn.output == repr(root.search_web(hop.question, 2))


def test_renamed_copies_are_consistent_variants(val_tasks, tmp_path):
  suite = ChainedResearchSuite(ChainedResearchConfig(result_style="compact", transcript_style="compact"))
  task = val_tasks[25]
  plain = suite.demonstrations(task, delegate=True, max_depth=4)
  copy = suite.demonstrations(task, delegate=True, max_depth=4, variant="7/1")
  again = suite.demonstrations(task, delegate=True, max_depth=4, variant="7/1")
  assert [(n.goal, n.turns) for n in copy] == [(n.goal, n.turns) for n in again]
  assert [len(n.turns) for n in copy] == [len(n.turns) for n in plain]
  assert [n.goal for n in copy[1:]] != [n.goal for n in plain[1:]]  # names moved
  assert copy[0].turns[-2].output != plain[0].turns[-2].output  # the final answer (a year) moved too
  # Names are renamed together: the answer a child returns is the name the next goal uses.
  for turn, next_child in zip(copy[0].turns[:-2], copy[2:]):
    assert turn.output.strip("'") in next_child.goal.split("\n")[0]
  assert not any(hop.entity in copy[0].goal for hop in task.hops[:-1] if " " in hop.entity
                 and not hop.entity.startswith("The "))


def test_whole_name_renaming_draws_names_of_the_same_kind(val_tasks):
  config = PRESETS["tiny"].corpus.graph
  names = entity_names(config, SPLITS)
  graph = get_graph(config, "val")
  renaming = EntityRenaming(graph, "3/1", names)
  new = [renaming.mapping[name] for name in graph.entities]
  assert len(set(new)) == len(new)  # a bijection onto its image
  for entity in graph.entities.values():
    assert renaming.mapping[entity.name] in names[entity.kind]
    assert renaming.mapping[entity.slug] == renaming.mapping[entity.name].lower().replace(" ", "_")
  assert sum(renaming.mapping[name] != name for name in graph.entities) > len(new) // 2
  assert EntityRenaming(graph, "3/1", names).mapping == renaming.mapping != EntityRenaming(graph, "4/1", names).mapping
  # Both splits' names are candidates: a val entity may take a train name.
  train_names = set(get_graph(config, "train").entities)
  assert any(renaming.mapping[name] in train_names for name in graph.entities)
  # A twin is renamed whole, never as "Little " + its sibling's new name.
  river, twin = next((e.name, e.twin) for e in graph.of_kind("river") if e.twin and e.twin.startswith("Little "))
  assert renaming(f"{twin} and {river}") == f"{renaming.mapping[twin]} and {renaming.mapping[river]}"
  with pytest.raises(ValueError, match="candidate person names"):
    EntityRenaming(graph, 0, {**names, "person": names["person"][:3]})
  with pytest.raises(ValueError, match="no candidates"):
    EntityRenaming(graph, 0, {kind: names[kind] for kind in KINDS if kind != "award"})


def test_whole_name_copies_write_every_name_as_one_piece(val_tasks, tmp_path):
  suite = ChainedResearchSuite(ChainedResearchConfig(result_style="compact", transcript_style="compact",
                                                     name_tokens="names"))
  words = suite.whole_words()
  tokenizer = tokenizer_lib.train_sentencepiece(corpus.builtin_corpus(50), model_prefix=str(tmp_path / "sp"),
                                                vocab_size=2048, whole_words=words)
  for task in val_tasks[::20]:
    for variant in (None, "5/2"):
      nodes = suite.demonstrations(task, delegate=True, max_depth=4, variant=variant)
      for child in nodes[1:-1]:  # every child but the last returns a name: one piece between the quotes
        finish = child.turns[-1].code
        assert finish.startswith("finish('") and finish[8:-2] in words, finish
        assert tokenizer.encode(finish)[-2] == tokenizer.token_id(finish[8:-2].replace(" ", "\u2581"))
