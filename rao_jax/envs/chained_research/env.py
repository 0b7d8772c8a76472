"""The chained-research node environment: search and page tools, fork with ancestors' goals, judging.

Every node of a tree answers one goal on the same split's pages:

- the root's goal is the task's question; it succeeds iff it finishes with the gold answer or an alias
  (`scoring.matches`: normalised exact match);
- a child's goal is free text written by its parent (`launch_subagent(goal)`). Its prompt shows its own
  goal, then a "Parent goals:" line with its ancestors' goals, most recent first. It is graded iff its
  goal, whitespace-collapsed and lower-cased, is a canonical sub-question of the graph (the start
  question of a describable entity, or a relation or attribute question about a named entity;
  `questions.sub_question_answers`) or the task's question: then exactly as the root, against that
  question's answer. Any other goal scores 0. So a child that correctly answers a well-posed hop about a
  wrong entity still succeeds; its parent's chain does not.

Every node's namespace also holds `question`, its own goal (without the "Parent goals" line), so a
child can search its hop without copying it.

The tools are called by hostile model-written code. Arguments are bound to the tool's signature and
checked with exact types (a `bool` is not a count, a `str` subclass is not a query) and bounded sizes;
misuse comes back as an "Error: ..." string. Results are fresh lists, dicts, strs and floats.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

from rao_jax.envs.base import JSONLike, PromptParts
from rao_jax.envs.tool_safety import ToolError, safe_tool as _safe_tool, show as _show
from rao_jax.envs.chained_research import questions, scoring
from rao_jax.envs.chained_research.graph import get_graph
from rao_jax.envs.chained_research.search import SearchIndex

MAX_QUERY_CHARS = 500
MAX_RESULTS = 10
MAX_URL_CHARS = 300
MAX_GOAL_CHARS = 1000
# What search_web returns per result: "full" is the spec's dict {url, title, content, score};
# "compact" is one string "title: snippet" (the tiny preset's short observations).
RESULT_STYLES = ("full", "compact")





def _text_argument(value: object, role: str, max_chars: int) -> str:
  if type(value) is not str:
    raise ToolError(f"{role} must be a str, got {_show(value)}")
  if not value.strip():
    raise ToolError(f"{role} is empty")
  if len(value) > max_chars:
    raise ToolError(f"{role} is too long ({len(value)} > {max_chars} characters)")
  return value


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
  """What every node of a split shares: the search index, the sub-question table, the result style."""

  index: SearchIndex
  sub_questions: Mapping[str, tuple[str, ...]]
  snippet_chars: int
  result_style: str


@functools.lru_cache(maxsize=8)
def get_corpus(dataset: str, split: str, result_style: str) -> Corpus:
  """The (per-process cached) corpus of a preset's split: building a root environment after the first
  is a dict lookup."""
  if dataset not in questions.PRESETS:
    raise ValueError(f"unknown chained research dataset {dataset!r}; known: {sorted(questions.PRESETS)}")
  if result_style not in RESULT_STYLES:
    raise ValueError(f"result_style={result_style!r} is not one of {RESULT_STYLES}")
  corpus = questions.PRESETS[dataset].corpus
  graph = get_graph(corpus.graph, split)
  return Corpus(index=corpus.index(split), sub_questions=questions.sub_question_answers(graph),
                snippet_chars=corpus.snippet_chars, result_style=result_style)


class ResearchNode:
  """The environment of one node: the tools over the split's pages, fork, and the judge."""

  def __init__(self, corpus: Corpus, task: questions.Task, goal: str, ancestors: tuple[str, ...] = ()):
    self.corpus = corpus
    self.task = task
    self.own_goal = goal
    self.ancestors = ancestors  # most recent first; empty at the root

  # ----------------------------------------------------------------------------------------- tools

  def tools(self) -> dict[str, Callable[..., Any]]:
    return {"search_web": self.search_web, "view_webpage_content": self.view_webpage_content}

  def namespace_variables(self) -> dict[str, JSONLike]:
    return {"question": self.own_goal}

  @_safe_tool
  def search_web(self, query, max_results=5) -> list | str:
    """The best `max_results` (1..10) pages for `query` by BM25: {url, title, content (a snippet), score}."""
    query = _text_argument(query, "query", MAX_QUERY_CHARS)
    if type(max_results) is not int or not 1 <= max_results <= MAX_RESULTS:
      raise ToolError(f"max_results must be an int in [1, {MAX_RESULTS}], got {_show(max_results)}")
    hits = self.corpus.index.search(query, max_results, self.corpus.snippet_chars)
    if self.corpus.result_style == "compact":
      return [f"{hit.page.title}: {hit.snippet}" for hit in hits]
    return [{"url": hit.page.url, "title": hit.page.title, "content": hit.snippet, "score": hit.score}
            for hit in hits]

  @_safe_tool
  def view_webpage_content(self, url) -> str:
    """The text of the page at `url` ("wiki/<slug>", as search results give it)."""
    url = _text_argument(url, "url", MAX_URL_CHARS)
    page = self.corpus.index.by_url.get(url.strip())
    if page is None:
      raise ToolError(f"no page at {_show(url)}; use a url from search_web's results")
    return page.text

  # --------------------------------------------------------------------------- fork and judge

  def fork(self, *args: Any, **kwargs: Any) -> "ResearchNode | str":
    """The environment side of `launch_subagent(goal)`: a child with this node in its ancestors."""
    return _fork(self, *args, **kwargs)

  def judge(self, finish_value: JSONLike) -> float:
    """1.0 iff the node's goal has a known answer (module docstring) and `finish_value` matches it."""
    answers = self.gold_answers()
    return 1.0 if answers and scoring.matches(finish_value, answers) else 0.0

  def gold_answers(self) -> tuple[str, ...]:
    """The answer forms of this node's goal; empty for a child goal that is no known question."""
    if not self.ancestors:
      return self.task.answers
    key = questions.question_key(self.own_goal)
    if key == questions.question_key(self.task.question):
      return self.task.answers
    return self.corpus.sub_questions.get(key, ())

  # ---------------------------------------------------------------------------------- prompts

  @property
  def goal(self) -> str:
    if not self.ancestors:
      return self.own_goal
    return f"{self.own_goal}\nParent goals: {' | '.join(self.ancestors)}"

  def prompt_parts(self, delegation: bool) -> PromptParts:
    tool_docs = TOOL_DOCS if self.corpus.result_style == "full" else TOOL_DOCS.replace(_FULL_SEARCH_DOC,
                                                                                       _COMPACT_SEARCH_DOC)
    return PromptParts(rules=RULES, delegation_rules=DELEGATION_RULES if delegation else "", goal=self.goal,
                       tool_docs=tool_docs + (DELEGATION_TOOL_DOCS if delegation else ""))


@functools.partial(_safe_tool, shown_name="launch_subagent")
def _fork(parent: ResearchNode, goal) -> ResearchNode:
  goal = _text_argument(goal, "goal", MAX_GOAL_CHARS)
  return ResearchNode(parent.corpus, parent.task, " ".join(goal.split()), (parent.own_goal,) + parent.ancestors)


RULES = """\
Research task: answer the question from a local encyclopedia of fictional entities, one page per \
entity. search_web(query) ranks pages by BM25 and shows a snippet of each, the page sentence closest \
to the query; view_webpage_content(url) shows a whole page. Each hop of the question needs the \
previous hop's answer; similar names and attributes are common, so check you have the right entity.
Finish with the answer alone (a name, a year, a date or a length), not a sentence."""

DELEGATION_RULES = """\
You may hand one hop at a time to a sub-agent: launch_subagent(goal) with a self-contained question \
that names the entity found so far (e.g. "In which city was Arlen Voss born?"); it returns the answer \
it finished with. The hops depend on each other, so await them one after another."""

_FULL_SEARCH_DOC = ("search_web(query: str, max_results: int = 5) -> list[dict]: the best pages, each "
                    "{url, title, content, score} (content: a snippet).")
_COMPACT_SEARCH_DOC = "search_web(query: str, max_results: int = 5) -> list[str]: the best pages, each 'title: snippet'."
TOOL_DOCS = f"""\
{_FULL_SEARCH_DOC}
view_webpage_content(url: str) -> str: the text of a page (url from a search result).
finish(message: str): end your episode; message is your answer.
question: str, your own goal (the question you answer)."""

DELEGATION_TOOL_DOCS = """
await launch_subagent(goal: str) -> str: a sub-agent works on goal (a self-contained question); \
returns its finish message or an error."""


def make_root_environment(env_config: Mapping[str, Any], task: Mapping[str, Any]) -> ResearchNode:
  """The root node of `task` (a `questions.Task.to_dict()`) on the pages of its split.

  `env_config` has "dataset" (a `questions.PRESETS` name, default "tiny") and "result_style" (one of
  RESULT_STYLES, default "full"). Raises ValueError on a bad config or task (trusted input).
  """
  unknown = sorted(set(env_config) - {"dataset", "result_style"})
  if unknown:
    raise ValueError(f"unknown chained research env_config keys {unknown}; known: ['dataset', 'result_style']")
  parsed = questions.Task.from_dict(task)
  corpus = get_corpus(env_config.get("dataset", "tiny"), parsed.split, env_config.get("result_style", "full"))
  return ResearchNode(corpus, parsed, parsed.question)
