"""Expert solvers of the long-context suite: agent transcripts executed against the real environment.

Each expert writes its cells and runs them with `TrustedCellRunner` on the node's real namespace
(`context`, `launch_subagent`, `finish`), so every observation is what the environment returns.

- recursive (the RAO agent): the root splits the relevant transcript into chunks of `chunk_lines`
  lines and asks every chunk the question's sub-goal in one `asyncio.gather` cell (all children run
  in parallel), then aggregates the results and finishes. A count question that holds for any chunk
  (`Question.chunk_question`) is handed on as it stands, `launch_subagent(question, context=c)`, so
  the root copies no name; other families get their canonical sub-goal sentence. A child prints its
  chunk, reads it, and finishes with the sub-goal's answer on the events its chunk holds. The root's
  answer is the gold answer.
- flat (a single agent with a window): states the question's sub-goal in its first thought, in the
  words a child would be given ("How many rolls did Arlo make?", else "Count the upcast spells in
  context."), prints the first `chunk_lines` lines, the most it can read, and answers
  from them: the truncated-input baseline. It solves a task only when the answer does not
  depend on the rest of the transcript.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from rao_jax.envs.base import DemoNode, DemoTurn
from rao_jax.envs.long_context import scoring
from rao_jax.envs.long_context.env import LongContextNode
from rao_jax.envs.long_context.sessions import episode_marker
from rao_jax.envs.trusted_runner import TrustedCellRunner


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  """delegate: the recursive expert (else the flat one); chunk_lines: lines a node reads at once."""

  delegate: bool = True
  chunk_lines: int = 20

  def __post_init__(self):
    if self.chunk_lines <= 0:
      raise ValueError(f"chunk_lines={self.chunk_lines} must be positive")


@dataclasses.dataclass(frozen=True)
class Solution:
  """The expert's tree (nodes depth first, root first), the root's finish value and success."""

  nodes: list[DemoNode]
  finish_value: Any
  success: float


def _lines_code(node: LongContextNode) -> str:
  question = node.question
  if question.family == "cumulative_rolls" and question.episode < node.campaign.num_episodes:
    return f'lines = context.split("{episode_marker(question.episode + 1)}")[0].strip().split("\\n")'
  return 'lines = context.split("\\n")'


def root_cells(node: LongContextNode, config: SolverConfig) -> list[tuple[str, str]]:
  """(thought, code) of the expert root's turns (recursive: one cell; flat: a read, then the answer)."""
  question = node.question
  sub_goal = question.sub_goal(node.campaign)
  n = config.chunk_lines
  if config.delegate:
    goal = "question" if question.chunk_question() else repr(sub_goal.text())
    return [("", f"{_lines_code(node)}\n"
                 f'chunks = ["\\n".join(lines[i:i + {n}]) for i in range(0, len(lines), {n})]\n'
                 f"results = await asyncio.gather(*[launch_subagent({goal}, context=c) for c in chunks])\n"
                 f"{question.aggregation_code()}")]
  read = "\n".join(node.context.split("\n")[:n])
  events = node.campaign.events_in(read)
  seen = scoring.format_answer(question.aggregate([sub_goal.answer(events)]))
  # The flat reader states what it looks for in the words a child would be given (`root_cells` above).
  stated = question.text() if question.chunk_question() else sub_goal.text()
  return [(stated, f'print("\\n".join(context.split("\\n")[:{n}]))'),
          (sub_goal.evidence(events), f'finish("\\\\boxed{{{seen}}}")')]


def child_cells(node: LongContextNode) -> list[tuple[str, str]]:
  """A child prints its chunk, notes the matching events (its thought) and finishes with its sub-goal's
  answer; a child whose goal is no sub-goal finishes with 0 without reading."""
  if node.sub_goal is None:
    return [("", "finish(0)")]
  events = node.campaign.events_in(node.context)
  return [("", "print(context)"), (node.sub_goal.evidence(events), f"finish({node.sub_goal.answer(events)!r})")]


async def _act(node: LongContextNode, depth: int, config: SolverConfig, nodes: list[DemoNode]) -> Any:
  """Runs `node`'s expert cells; appends its DemoNode (then its children's) to `nodes`."""
  position = len(nodes)
  nodes.append(None)  # this node's place: before its children, depth first
  finished: list[Any] = []
  children: list[list[DemoNode]] = []

  async def launch_subagent(goal, context=""):
    child = node.fork(goal, context)
    if isinstance(child, str):
      return child
    subtree: list[DemoNode] = []
    children.append(subtree)
    return await _act(child, depth + 1, config, subtree)

  namespace = dict(node.namespace_variables(), finish=finished.append, launch_subagent=launch_subagent)
  runner = TrustedCellRunner(namespace)
  cells = root_cells(node, config) if node.question is not None else child_cells(node)
  turns = []
  for thought, code in cells:
    output = await runner.run(code)
    turns.append(DemoTurn(thought=thought, code=code, output=None if finished else output))
    if finished:
      break
  nodes[position] = DemoNode(goal=node.goal, depth=depth, environment=node, turns=tuple(turns))
  for subtree in children:
    nodes.extend(subtree)
  return finished[0] if finished else None


def solve(root: LongContextNode, config: SolverConfig) -> Solution:
  """The expert's whole tree for `root`."""
  nodes: list[DemoNode] = []
  finish_value = asyncio.run(_act(root, 0, config, nodes))
  return Solution(nodes=nodes, finish_value=finish_value, success=root.judge(finish_value))
