"""Tests of the chained research node environment: tools under hostile arguments, fork, judging, prompts."""
import json

import pytest

from rao_jax.envs import registry
from rao_jax.envs.base import PromptParts
from rao_jax.envs.chained_research import env as env_lib
from rao_jax.envs.chained_research.questions import build_splits

ENV_CONFIG = {"dataset": "tiny", "result_style": "full"}


@pytest.fixture(scope="module")
def task():
  return next(t for t in build_splits("tiny")["val"] if t.difficulty == "3hop")


@pytest.fixture
def root(task):
  return registry.make_root_environment("chained_research", ENV_CONFIG, task.to_dict())


class HostileStr(str):
  def __eq__(self, other):
    raise RuntimeError("boom")

  def __hash__(self):
    raise RuntimeError("boom")

  def strip(self, *args):
    raise RuntimeError("boom")


class HostileInt(int):
  def __le__(self, other):
    raise RuntimeError("boom")


def test_search_returns_ranked_json_like_results(root, task):
  hop = task.hops[1]
  results = root.search_web(hop.question)
  assert 1 <= len(results) <= 5 and json.loads(json.dumps(results)) == results
  assert set(results[0]) == {"url", "title", "content", "score"}
  assert results[0]["title"] == hop.entity and hop.answers[0] in results[0]["content"]
  assert results[0]["url"].startswith("wiki/") and type(results[0]["score"]) is float
  assert len(root.search_web(hop.question, max_results=1)) == 1
  assert len(root.search_web(query="river", max_results=10)) == 10
  assert root.search_web("the of and") == []


def test_view_webpage_content_returns_the_page(root, task):
  url = root.search_web(task.hops[1].question)[0]["url"]
  text = root.view_webpage_content(url)
  assert text.startswith(task.hops[1].entity + "\n") and task.hops[1].answers[0] in text
  assert root.view_webpage_content(f"  {url} ") == text


def test_compact_results_are_title_and_snippet(task):
  node = env_lib.make_root_environment({"dataset": "tiny", "result_style": "compact"}, task.to_dict())
  results = node.search_web(task.hops[1].question, 2)
  assert len(results) == 2 and results[0].startswith(task.hops[1].entity + ": ")


BAD_SEARCHES = [
    ((), {}), ((None,), {}), ((12,), {}), ((b"river",), {}), ((["river"],), {}), ((HostileStr("river"),), {}),
    (("",), {}), (("   ",), {}), (("x" * 501,), {}), (("x" * 10**7,), {}),
    (("river", 0), {}), (("river", -1), {}), (("river", 11), {}), (("river", 10**30), {}),
    (("river", True), {}), (("river", 2.0), {}), (("river", "5"), {}), (("river", HostileInt(3)), {}),
    (("river", 5, 6), {}), (("river",), {"k": 3}), (("river",), {"max_results": None}),
    ((), {"query": "river", "extra": 1}),
]


@pytest.mark.parametrize("args, kwargs", BAD_SEARCHES)
def test_search_misuse_returns_an_error_and_never_raises(root, args, kwargs):
  result = root.search_web(*args, **kwargs)
  assert type(result) is str and result.startswith("Error: ") and len(result) < 300


BAD_VIEWS = [((), {}), ((None,), {}), ((3,), {}), ((HostileStr("wiki/x"),), {}), (("",), {}),
             (("wiki/nobody_here",), {}), (("x" * 10**6,), {}), (("wiki/a", "b"), {}), ((), {"link": "wiki/a"})]


@pytest.mark.parametrize("args, kwargs", BAD_VIEWS)
def test_view_misuse_returns_an_error_and_never_raises(root, args, kwargs):
  result = root.view_webpage_content(*args, **kwargs)
  assert type(result) is str and result.startswith("Error: ") and len(result) < 300


def test_errors_name_the_problem(root):
  assert "max_results must be an int in [1, 10], got True" in root.search_web("river", True)
  assert "query must be a str, got 12" in root.search_web(12)
  assert "no page at 'wiki/nobody_here'" in root.view_webpage_content("wiki/nobody_here")
  assert "bad arguments to search_web(query, max_results=5)" in root.search_web("river", k=3)


@pytest.mark.parametrize("args, kwargs", [((), {}), ((None,), {}), ((7,), {}), (("",), {}), (("x" * 1001,), {}),
                                          (("a", "b"), {}), (("a",), {"context": "c"}),
                                          ((HostileStr("goal"),), {})])
def test_fork_misuse_returns_an_error(root, args, kwargs):
  result = root.fork(*args, **kwargs)
  assert type(result) is str and result.startswith("Error: ")


def test_root_is_judged_on_the_gold_answer_and_aliases(root, task):
  assert root.judge(task.answers[0]) == 1.0 and root.judge(task.answers[-1]) == 1.0
  assert root.judge(f"  {task.answers[0].upper()}. ") == 1.0
  assert root.judge("something else") == 0.0 and root.judge(None) == 0.0 and root.judge([task.answers[0]]) == 0.0


def test_children_see_ancestors_goals_and_are_graded_on_known_sub_questions(root, task):
  hop = task.hops[1]
  child = root.fork(hop.question)
  assert child.goal == f"{hop.question}\nParent goals: {task.question}"
  assert child.judge(hop.answers[0]) == 1.0 and child.judge(task.answers[0]) == (hop.answers == task.answers)
  grandchild = child.fork(f"  {hop.question.lower()} ")  # whitespace and case do not matter
  assert grandchild.goal.endswith(f"Parent goals: {hop.question} | {task.question}")
  assert grandchild.judge(hop.answers[0]) == 1.0
  # A well-posed question about another entity is graded on its own answer.
  other = task.hops[2]
  assert root.fork(other.question).judge(other.answers[0]) == 1.0
  # The task's own question, delegated whole, is graded like the root.
  assert root.fork(task.question).judge(task.answers[0]) == 1.0
  # Free text that is no known question scores 0 whatever the answer.
  vague = root.fork(f"Find out {hop.question}")
  assert vague.judge(hop.answers[0]) == 0.0


def test_prompt_parts(root, task):
  parts = root.prompt_parts(delegation=True)
  assert isinstance(parts, PromptParts) and parts.goal == task.question
  assert "launch_subagent" in parts.tool_docs and parts.delegation_rules
  flat = root.prompt_parts(delegation=False)
  assert "launch_subagent" not in flat.tool_docs and not flat.delegation_rules
  assert "search_web" in flat.tool_docs and "view_webpage_content" in flat.tool_docs
  assert root.tools().keys() == {"search_web", "view_webpage_content"} and root.namespace_variables() == {"question": root.own_goal}


def test_root_factory_checks_its_trusted_inputs(task):
  with pytest.raises(ValueError, match="unknown chained research env_config keys"):
    env_lib.make_root_environment({"world": "tiny"}, task.to_dict())
  with pytest.raises(ValueError, match="unknown chained research dataset"):
    env_lib.make_root_environment({"dataset": "huge"}, task.to_dict())
  with pytest.raises(ValueError, match="result_style"):
    env_lib.make_root_environment({"result_style": "long"}, task.to_dict())
  with pytest.raises((ValueError, KeyError)):
    env_lib.make_root_environment({}, {"question": "q"})


def test_roots_share_one_corpus(task):
  a = env_lib.make_root_environment(ENV_CONFIG, task.to_dict())
  b = env_lib.make_root_environment(ENV_CONFIG, task.to_dict())
  assert a.corpus is b.corpus and a is not b
