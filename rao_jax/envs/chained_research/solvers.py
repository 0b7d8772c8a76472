"""Expert solvers: whole agent trees for chained research tasks, executed against the real tools.

The expert knows the task's hops (`questions.Task.hops`: each lookup's canonical sub-question and
answer) and writes the cells an agent would: each cell runs in the node's namespace with the node's
real tools (`TrustedCellRunner`), so every observation is what the environment really returned, and
the expert gives up (None) unless each lookup's observation states the hop's answer and every node's
judge accepts its finish value. Two policies:

- flat: one agent does every hop: search for the hop's sub-question (and in the "spec" style read the
  top page), then the next hop's search names the entity just found; finally finish(answer);
- recursive: the root hands each hop to a child, one after another (each goal names the previous
  child's answer, so nothing runs in parallel), then finishes with the last child's answer. It keeps
  each answer in the variable `answer` and writes the next goal as an f-string on it
  (`f"Which organisation is {answer} a member of?"`), so the only names it writes are those of its
  own question. Each child searches its `question` variable (its goal) and finishes with the hop's
  answer, the one name it copies. At `max_depth` 0 the recursive expert is the flat one.

Transcript styles: "spec" (a thought per turn, `max_results` 5, results printed one per line, the top
page read) and "compact" (no thoughts, one cell per lookup: `search_web(q, n)` with the results
printed as the cell's value, no page read; for the tiny preset's small windows).
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from rao_jax.envs.base import DemoNode, DemoTurn
from rao_jax.envs.chained_research import scoring
from rao_jax.envs.chained_research.env import ResearchNode
from rao_jax.envs.chained_research.questions import Hop
from rao_jax.envs.trusted_runner import TrustedCellRunner

TRANSCRIPT_STYLES = ("spec", "compact")


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  """Which expert, and how its transcripts read.

  Attributes:
    delegate: the recursive expert (True) or the flat one (False).
    max_depth: a node at this depth (root = 0) may not launch children.
    style: "spec" or "compact" (module docstring).
    max_results: `max_results` of the compact style's searches (the spec style uses the default 5).
  """

  delegate: bool = False
  max_depth: int = 4
  style: str = "spec"
  max_results: int = 2

  def __post_init__(self):
    if self.style not in TRANSCRIPT_STYLES:
      raise ValueError(f"style must be one of {TRANSCRIPT_STYLES}, got {self.style!r}")
    if self.max_depth < 0:
      raise ValueError(f"max_depth must be >= 0, got {self.max_depth}")
    if not 1 <= self.max_results <= 10:
      raise ValueError(f"max_results must be in [1, 10], got {self.max_results}")


class ExpertFailed(Exception):
  """An observation did not show what the expert needed (a question the filters should have dropped)."""


class _Node:
  """One node being acted: its environment, a cell runner on its real tools, and its turns."""

  def __init__(self, env: ResearchNode, depth: int, launch: Any = None):
    self.env, self.depth = env, depth
    self.turns: list[DemoTurn] = []
    self.finished: list[Any] = []
    namespace = dict(env.tools(), finish=self.finished.append, **env.namespace_variables())
    if launch is not None:
      namespace["launch_subagent"] = launch
    self.runner = TrustedCellRunner(namespace)

  async def cell(self, thought: str, code: str) -> str:
    output = await self.runner.run(code)
    self.turns.append(DemoTurn(thought=thought, code=code, output=None if self.finished else output))
    return output


def _search_code(query: str, config: SolverConfig) -> str:
  """A search for `query`, a Python expression (a string literal, or the variable `question`)."""
  if config.style == "compact":
    return f"search_web({query}, {config.max_results})"
  return (f"results = search_web({query})\n"
          "for r in results:\n"
          "    print(r['url'], '|', r['title'], '|', r['content'])")


async def _lookup(node: _Node, hop: Hop, config: SolverConfig, previous: str | None) -> None:
  """The cells of one hop; ExpertFailed unless what they print states the hop's answer."""
  lead = f"So the answer is {previous}. " if previous else ""
  # A node whose own goal is this hop (a child) searches its `question` variable: it copies no name.
  query = "question" if node.env.own_goal == hop.question else repr(hop.question)
  output = await node.cell(f"{lead}Next I search: {hop.question}" if config.style == "spec" else "",
                           _search_code(query, config))
  if config.style == "spec":
    url = node.env.corpus.index.search(hop.question, 1, node.env.corpus.snippet_chars)[0].page.url
    output = await node.cell(f"The top result is the page of {hop.entity}; I read it.",
                             f"print(view_webpage_content({url!r}))")
  if not scoring.mentions(output, hop.answers):
    raise ExpertFailed(f"the lookup of {hop.question!r} did not show {hop.answers[0]!r}")


async def _finish(node: _Node, answer: str, config: SolverConfig, code: str | None = None) -> None:
  """Finishes with `answer`, written as a literal unless `code` (e.g. "finish(answer)") says otherwise."""
  thought = f"The answer is {answer}." if config.style == "spec" else ""
  await node.cell(thought, code or f"finish({answer!r})")
  if node.env.judge(node.finished[0]) < 1.0:
    raise ExpertFailed(f"the judge rejected {answer!r} for {node.env.own_goal!r}")


async def _act_flat(env: ResearchNode, hops: tuple[Hop, ...], depth: int, config: SolverConfig
                    ) -> tuple[list[DemoNode], Any]:
  """The flat expert's node on `hops`, and the value it finished with."""
  node = _Node(env, depth)
  previous = None
  for hop in hops:
    await _lookup(node, hop, config, previous)
    previous = hop.answers[0]
  await _finish(node, hops[-1].answers[0], config)
  return [DemoNode(goal=env.goal, depth=depth, environment=env, turns=tuple(node.turns))], node.finished[0]


def _goal_code(hop: Hop, previous: str | None) -> str:
  """The goal of the child for `hop` as code: the first hop's sub-question as a literal, every later
  one as an f-string that names the previous child's answer through the variable `answer` (the root
  copies no name it has read)."""
  if previous is None:
    return repr(hop.question)
  if hop.question.count(previous) != 1 or "{" in hop.question or "}" in hop.question:
    raise ExpertFailed(f"{hop.question!r} does not name {previous!r} exactly once")
  before, after = hop.question.split(previous)
  return "f" + repr(before + "{answer}" + after)


async def _act_recursive(env: ResearchNode, config: SolverConfig) -> list[DemoNode]:
  children: list[list[DemoNode]] = []
  hops = {hop.question: hop for hop in env.task.hops}

  async def launch_subagent(goal):
    child_env = env.fork(goal)
    if isinstance(child_env, str):
      return child_env
    child, answer = await _act_flat(child_env, (hops[goal],), 1, config)
    children.append(child)
    return answer

  node = _Node(env, 0, launch_subagent)
  previous = None
  for index, hop in enumerate(env.task.hops):
    goal = _goal_code(hop, previous)
    if config.style == "compact":
      output = await node.cell("", f"answer = await launch_subagent({goal})\nanswer")
    else:
      output = await node.cell(f"Hop {index + 1}: I delegate '{hop.question}' to a sub-agent.",
                               f"answer = await launch_subagent({goal})\nprint(answer)")
    if not scoring.mentions(output, hop.answers):
      raise ExpertFailed(f"the child for {hop.question!r} did not return {hop.answers[0]!r}")
    previous = hop.answers[0]
  await _finish(node, env.task.answers[0], config, code="finish(answer)")
  root = DemoNode(goal=env.goal, depth=0, environment=env, turns=tuple(node.turns))
  return [root] + [demo for child in children for demo in child]


def solve(root: ResearchNode, config: SolverConfig = SolverConfig()) -> list[DemoNode] | None:
  """The expert tree of `root` (nodes depth first, root first), or None if the expert fails."""
  try:
    if config.delegate and config.max_depth >= 1:
      return asyncio.run(_act_recursive(root, config))
    return asyncio.run(_act_flat(root, root.task.hops, 0, config))[0]
  except ExpertFailed:
    return None
