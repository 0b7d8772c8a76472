"""System prompt and first user turn texts."""
import pytest

from rao_jax.agent import prompts, turn_format
from rao_jax.envs.base import PromptParts

PARTS = PromptParts(rules="ENV RULES: craft on top of what you own.",
                    delegation_rules="ENV DELEGATION: the inventory is shared.",
                    goal="Craft the following items: 2x m0_i5",
                    tool_docs="craft(ingredients, target) -> str\nfinish(message: str)")


def test_system_prompt_without_delegation():
  text = prompts.system_prompt(PARTS, delegation=False)
  assert PARTS.rules in text
  assert "launch_subagent" not in text and PARTS.delegation_rules not in text
  for marker in (turn_format.THOUGHT_OPEN, turn_format.CODE_OPEN, turn_format.CODE_CLOSE, "finish(",
                 turn_format.observation_header(1)):
    assert marker in text


def test_system_prompt_with_delegation_puts_env_advice_after_generic_rules():
  text = prompts.system_prompt(PARTS, delegation=True)
  for phrase in ("await launch_subagent(", "asyncio.gather(", "not awaited", "fresh context",
                 "error string"):
    assert phrase in text
  assert text.index("asyncio.gather(") < text.index(PARTS.delegation_rules)
  assert text.index(PARTS.rules) < text.index("launch_subagent")


def test_empty_delegation_rules_leave_no_blank_section():
  parts = PromptParts(rules="R", delegation_rules="  ", goal="G", tool_docs="T")
  text = prompts.system_prompt(parts, delegation=True)
  assert "\n\n\n" not in text and text == text.strip()


def test_first_user_turn():
  text = prompts.first_user_turn(PARTS, step_budget=25)
  assert text.endswith(f"Goal: {PARTS.goal}")  # last: everything before it is shared by all nodes
  assert "25 cells" in text and PARTS.tool_docs in text
  assert turn_format.CODE_CLOSE in text and turn_format.THOUGHT_OPEN in text


def test_texts_are_deterministic_and_short():
  assert prompts.system_prompt(PARTS, delegation=True) == prompts.system_prompt(PARTS, delegation=True)
  assert len(prompts.system_prompt(PARTS, delegation=True)) < 1500
  assert len(prompts.first_user_turn(PARTS, step_budget=3)) < 600


def test_bad_step_budget():
  with pytest.raises(ValueError, match="step_budget=0"):
    prompts.first_user_turn(PARTS, step_budget=0)


def test_minimal_style_keeps_only_the_budget_the_delegation_switch_and_the_goal():
  full_user = prompts.first_user_turn(PARTS, step_budget=12)
  user = prompts.first_user_turn(PARTS, step_budget=12, style="minimal")
  assert user.endswith(f"Goal: {PARTS.goal}") and "12 cells" in user
  assert PARTS.tool_docs not in user and len(user) < len(full_user) / 3
  with_delegation = prompts.system_prompt(PARTS, delegation=True, style="minimal")
  without = prompts.system_prompt(PARTS, delegation=False, style="minimal")
  assert "launch_subagent" in with_delegation and "launch_subagent" not in without
  assert PARTS.rules not in with_delegation and "finish(message)" in without


@pytest.mark.parametrize("make", [
    lambda: prompts.system_prompt(PARTS, delegation=True, style="terse"),
    lambda: prompts.first_user_turn(PARTS, step_budget=3, style="terse"),
])
def test_unknown_prompt_style(make):
  with pytest.raises(ValueError, match="prompt_style='terse'"):
    make()
