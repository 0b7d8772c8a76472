"""The texts of a node's system prompt and first user turn (RAO method spec, section 2).

Generic agent rules live here; everything task-specific comes from the environment's `PromptParts`.
Texts are deterministic and short: the toy models have small contexts and every token of a prompt is
paid for at every node of every tree.

Two styles:
  "full":    the rules, tool docs and turn format an instruction-tuned LLM needs (the paper's setting).
  "minimal": one line of rules, the cell budget and the goal. For models trained from scratch, which
             learn the protocol from expert demonstrations and cannot read instructions: the full text
             is ~660 of a ~1,500-token average TextCraft node, so dropping it halves the tokens a warm
             start and every RL step pay for.
Both end with the goal, so every node's prompt shares all text before it.
"""
from __future__ import annotations

from rao_jax.agent import turn_format
from rao_jax.envs.base import PromptParts

_EXAMPLE_TURN = turn_format.render_assistant_turn(
    "One to three sentences of reasoning.", 'result = do_something()\nprint(result)')

_AGENT_RULES = f"""\
You are an agent that acts by writing Python code.
Each turn: a short thought in {turn_format.THOUGHT_OPEN}...{turn_format.THOUGHT_CLOSE}, then exactly \
one code cell in {turn_format.CODE_OPEN}...{turn_format.CODE_CLOSE}. Stop after {turn_format.CODE_CLOSE}.
The cell runs and its printed output (or error) comes back as {turn_format.observation_header(1)}, \
{turn_format.observation_header(2)}, ...
Variables, imports and functions persist between cells. Print what you need to see.
Call finish(message) when the task is done; it ends the episode and message is your result."""

_DELEGATION_RULES = """\
Delegation: `await launch_subagent(...)` starts a sub-agent, a copy of you with a fresh context (it \
sees none of your history, only the goal you give it), and returns the value it passes to finish.
Run independent sub-tasks in parallel: `a, b = await asyncio.gather(launch_subagent(...), \
launch_subagent(...))`.
Always await launch_subagent; a call that is not awaited is rejected.
If a sub-agent fails, you get an error string instead of its result; check it and continue."""


PROMPT_STYLES = ("full", "minimal")


def check_style(style: str, field: str = "prompt_style") -> None:
  """ValueError (naming `field`) unless `style` is one of PROMPT_STYLES."""
  if style not in PROMPT_STYLES:
    raise ValueError(f"{field}={style!r} is not one of {PROMPT_STYLES}")


def system_prompt(parts: PromptParts, *, delegation: bool, style: str = "full") -> str:
  """Generic rules, the environment's rules, and (if `delegation`) how and when to delegate."""
  check_style(style)
  if style == "minimal":
    return ("Act in Python cells; finish(message) ends the episode."
            + (" await launch_subagent(...) delegates." if delegation else ""))
  sections = [_AGENT_RULES, parts.rules.strip()]
  if delegation:
    sections.append(_DELEGATION_RULES)
    if parts.delegation_rules.strip():
      sections.append(parts.delegation_rules.strip())
  return "\n\n".join(s for s in sections if s)


def first_user_turn(parts: PromptParts, *, step_budget: int, style: str = "full") -> str:
  """The cell budget, the tools, the required turn format, and last the goal.

  The goal comes last so that every node's prompt shares everything before it: the rollout engine
  computes that shared prefix's KV cache once per run instead of prefilling it for every node.
  """
  if step_budget <= 0:
    raise ValueError(f"step_budget={step_budget} must be positive")
  check_style(style)
  if style == "minimal":
    return f"You have at most {step_budget} cells.\n\nGoal: {parts.goal.strip()}"
  return "\n\n".join((
      f"You have at most {step_budget} cells. Call finish(message) before they run out.",
      f"Functions:\n{parts.tool_docs.strip()}",
      f"Answer in this format:\n{_EXAMPLE_TURN}",
      f"Goal: {parts.goal.strip()}",
  ))


def node_prompt(parts: PromptParts, *, delegation: bool, step_budget: int, style: str = "full") -> tuple[str, str]:
  """(system prompt, first user turn) of a node: what the rollout engine and the warm start both show."""
  return (system_prompt(parts, delegation=delegation, style=style),
          first_user_turn(parts, step_budget=step_budget, style=style))
