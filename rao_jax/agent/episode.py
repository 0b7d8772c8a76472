"""One node's episode as tokens: the single renderer of the engine, the warm start and the scripts.

A node's sequence is its prompt, then alternating model turns and environment observations:

    layout.start(system_prompt(parts, may_delegate), first_user_turn(parts, max_steps_per_node))  ENV
    encode(render_assistant_turn(thought, code))                                                MODEL
    layout.continuation_ids(render_observation(i, output), completion)    (not after the last)  ENV
    ...

The rollout engine builds it token by token as the policy samples (`start`, `observation_ids`); the warm
start renders a whole expert node at once (`render_node`). Both go through these functions, so what SFT
trains on is exactly what the engine shows. Whether a node may delegate is `rao_jax.agent.delegation`'s
one rule (`EpisodeFormat.may_delegate`): a node at the depth cap sees no delegation section and no
`launch_subagent` docs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rao_jax.agent import delegation, prompts, turn_format
from rao_jax.agent.chat import ChatLayout, Conversation
from rao_jax.envs.base import DemoNode, DemoTurn, NodeEnvironment, PromptParts


@dataclasses.dataclass(frozen=True)
class EpisodeFormat:
  """How every node's episode reads, and the limits that shape it (a view of `RolloutConfig`).

  Attributes:
    delegation: whether nodes may launch sub-agents at all (False: the single-agent baseline).
    max_depth: root = 0; a node at this depth may not delegate.
    max_steps_per_node: cells a node may run (its prompt states the budget).
    context_window: tokens per node sequence.
    prompt_style: "full" or "minimal" (`rao_jax.agent.prompts`).
  """

  delegation: bool
  max_depth: int
  max_steps_per_node: int
  context_window: int
  prompt_style: str

  def may_delegate(self, depth: int) -> bool:
    """Whether a node at `depth` may launch sub-agents (`delegation.may_delegate`)."""
    return delegation.may_delegate(self.delegation, self.max_depth, depth)


def assistant_text(turn: DemoTurn) -> str:
  """The text of a demonstrated assistant turn (a thought, if any, then the cell)."""
  return turn_format.render_assistant_turn(turn.thought, turn.code)


def node_parts(environment: NodeEnvironment, depth: int, fmt: EpisodeFormat, goal: str | None = None
               ) -> PromptParts:
  """The prompt parts a node at `depth` is shown, with its goal replaced by `goal` if given."""
  parts = environment.prompt_parts(fmt.may_delegate(depth))
  return parts if goal is None else dataclasses.replace(parts, goal=goal)


def prompt_texts(parts: PromptParts, depth: int, fmt: EpisodeFormat) -> tuple[str, str]:
  """(system prompt, first user turn) of a node at `depth`."""
  return prompts.node_prompt(parts, delegation=fmt.may_delegate(depth),
                             step_budget=fmt.max_steps_per_node, style=fmt.prompt_style)


def start(layout: ChatLayout, parts: PromptParts, depth: int, fmt: EpisodeFormat) -> Conversation:
  """A node's conversation holding only its prompt."""
  return layout.start(*prompt_texts(parts, depth, fmt))


def observation_text(cell_index: int, output: str) -> str:
  """The user turn after cell `cell_index` (1-based): the header, then what the cell printed."""
  return turn_format.render_observation(cell_index, output)


def render_node(layout: ChatLayout, parts: PromptParts, turns: Sequence[tuple[str, str | None]], depth: int,
                fmt: EpisodeFormat) -> Conversation:
  """The whole token sequence of a node: `turns` are (assistant text, observation text or None after the
  node's last turn), as the engine would have appended them one by one."""
  conversation = start(layout, parts, depth, fmt)
  for completion, observation in turns:
    layout.add_turn(conversation, layout.tokenizer.encode(completion), None, observation)
  return conversation


def render_demo_node(layout: ChatLayout, node: DemoNode, fmt: EpisodeFormat) -> Conversation:
  """An expert node as the engine would have built it (uncut; see `render_node`)."""
  turns = [(assistant_text(turn), None if turn.output is None else observation_text(index, turn.output))
           for index, turn in enumerate(node.turns, start=1)]
  return render_node(layout, node_parts(node.environment, node.depth, fmt, node.goal), turns, node.depth,
                     fmt)


def demo_texts(node: DemoNode) -> list[str]:
  """Every turn and observation text of an expert node (tokenizer training text)."""
  texts = []
  for index, turn in enumerate(node.turns, start=1):
    texts.append(assistant_text(turn))
    texts.append(observation_text(index, turn.output or ""))
  return texts
