"""The contract between an environment and the recursive-agent machinery.

An environment is seen one *node* at a time: every agent instance in an execution tree owns a
`NodeEnvironment`. The root's comes from a registered factory (`registry.make_root_environment`),
a child's from its parent's `fork`, which is the environment side of `launch_subagent`. Everything
here runs in the trainer's process, in the interpreter pool (the trusted side of the sandbox; the node's
Python namespace lives in a sandboxed process of its own and reaches it only by messages), so a tree's
shared state (TextCraft's inventory) is an ordinary Python object shared by reference.

Values that cross the boundary to the trainer (goals, finish values, child results) are JSON-like:
None, bool, int, float, str, and lists / dicts of them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Union

JSONLike = Union[None, bool, int, float, str, list, dict]


@dataclasses.dataclass(frozen=True)
class PromptParts:
  """What an environment contributes to a node's prompt.

  Attributes:
    rules: the environment's rules, placed in the system prompt.
    delegation_rules: environment-specific advice on delegating (what to hand a child, how the
      shared state behaves); shown only to agents that may delegate. Empty if none.
    goal: this node's goal, shown in the first user turn.
    tool_docs: signatures and short docs of every callable the node may use, `finish` and (when
      delegation is on) `launch_subagent` included, as this environment defines them.
  """

  rules: str
  delegation_rules: str
  goal: str
  tool_docs: str


class NodeEnvironment(Protocol):
  """The environment side of one node of a recursive execution tree."""

  def prompt_parts(self, delegation: bool) -> PromptParts:
    """Texts for this node's system prompt and first user turn."""
    ...

  def tools(self) -> dict[str, Callable[..., Any]]:
    """Plain functions put into the node's interpreter namespace (not `finish`/`launch_subagent`).

    Tools are called by hostile code: they validate every argument and report misuse by *returning*
    an error string; no input may make them raise.
    """
    ...

  def namespace_variables(self) -> dict[str, JSONLike]:
    """Extra variables for the node's namespace (e.g. a long `context` held outside the prompt)."""
    ...

  def fork(self, *args: Any, **kwargs: Any) -> "NodeEnvironment | str":
    """The environment side of `launch_subagent(*args, **kwargs)`.

    Returns the child's environment, or an error string (bad arguments) that becomes the result of
    the parent's await. Must never raise.
    """
    ...

  def judge(self, finish_value: JSONLike) -> float:
    """This node's own success s in [0, 1], judged when it calls `finish(finish_value)`."""
    ...


# A factory builds a root node's environment from the environment's config (hashable, JSON-like;
# e.g. the world's generator settings) and one task (a JSON-like dict from the dataset).
RootFactory = Callable[[dict, dict], NodeEnvironment]


@dataclasses.dataclass(frozen=True)
class DemoTurn:
  """One assistant turn of an expert demonstration: a thought (may be empty), one cell, and what the
  cell printed (None for the cell that finished)."""

  thought: str
  code: str
  output: str | None


@dataclasses.dataclass(frozen=True)
class DemoNode:
  """One node of an expert tree, as a suite hands it to the warm start (`rao_jax.agent.episode` renders it).

  `environment` is the node's own environment (its prompt parts); `goal` is what the node's prompt
  shows, which differs from the environment's in an augmented (renamed) copy.
  """

  goal: str
  depth: int
  environment: NodeEnvironment
  turns: tuple[DemoTurn, ...]


def renamed_nodes(nodes: list[DemoNode], rename: Callable[[str], str]) -> list[DemoNode]:
  """An augmented copy of an expert tree: `rename` applied to every goal, thought, cell and output."""
  return [DemoNode(goal=rename(node.goal), depth=node.depth, environment=node.environment,
                   turns=tuple(DemoTurn(rename(turn.thought), rename(turn.code),
                                        None if turn.output is None else rename(turn.output))
                               for turn in node.turns))
          for node in nodes]
