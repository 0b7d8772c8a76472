"""The built-in training corpus of the toy tokenizers: TextCraft-like agent turns and prompts.

It lives above `rao_jax.tokenizer` (which imports nothing from rao_jax) because it renders turns and
prompts with the agent's own formats, so that a tokenizer trained on it learns the text nodes read.
"""
from __future__ import annotations

import random

from rao_jax.agent import prompts, turn_format
from rao_jax.envs.base import PromptParts


def builtin_corpus(num_examples: int = 2000, seed: int = 0) -> list[str]:
  """A deterministic toy corpus: TextCraft-like sentences and agent turns with Python cells.

  Enough to train a tokenizer for the tiny models when no environment text is at hand. The generic
  agent prompts are included so that the rules every node reads cost few tokens.
  """
  rng = random.Random(seed)
  items = [f"m{d}_i{i}" for d in range(4) for i in range(12)] + [
      "plank", "stick", "log", "iron_ingot", "crafting_table", "wool", "string", "bowl"]
  tools = ("craft", "get_info", "view_inventory")
  texts = []
  for step in range(num_examples):
    item, other = rng.choice(items), rng.choice(items)
    count, units = rng.randint(1, 12), rng.randint(1, 4)
    recipe = f"{units}x {other}" if rng.random() < 0.5 else f"{units}x {other}, {units + 1}x {item}"
    thought = rng.choice((
        f"I need {count} {item}; first I check the inventory.",
        f"The recipe for {item} uses {recipe}. I will craft it.",
        f"Delegate the {other} sub-task to a child, then craft {item}.",
        "Check what I have before crafting.",
    ))
    code = rng.choice((
        f"inv = view_inventory()\nprint(inv.get({item!r}, 0))",
        f"print(get_info([{item!r}, {other!r}]))",
        f"print(craft({{{other!r}: {units}}}, ({item!r}, {count})))",
        f"r = await launch_subagent({{{other!r}: {count}}})\nprint(r)",
        f"a, b = await asyncio.gather(\n    launch_subagent({{{item!r}: {count}}}),\n"
        f"    launch_subagent({{{other!r}: {units}}}))\nprint(a, b)",
        f"for name in [{item!r}, {other!r}]:\n    if inv.get(name, 0) < {count}:\n"
        f"        print(name, 'missing')",
        f"finish('Crafted {count}x {item}.')",
    ))
    observation = rng.choice((
        f"Crafted {count} {item} from {recipe}.",
        f"{item}: {recipe} -> {units} {item}",
        f"{{{item!r}: {count}, {other!r}: {units}}}",
        f"Error: not enough {other} (have {units - 1}, need {units}).",
        f"Traceback (most recent call last):\n  File \"<cell>\", line 1\n"
        f"NameError: name {rng.choice(tools)!r} is not defined",
    ))
    texts.append(turn_format.render_assistant_turn(thought, code))
    texts.append(turn_format.render_observation(step % 25 + 1, observation))
    goal = f"Craft the following items: {count}x {item}, {units}x {other}"
    texts.append(goal)
    if step % 10 == 0:
      parts = PromptParts(
          rules=f"Crafting: craft(ingredients, target) makes {item} from {recipe} you own.",
          delegation_rules="The inventory is shared with sub-agents.", goal=goal,
          tool_docs="\n".join(f"{tool}(...) -> str" for tool in tools))
      texts.append(prompts.system_prompt(parts, delegation=step % 20 == 0))
      texts.append(prompts.first_user_turn(parts, step_budget=rng.randint(5, 30)))
  return texts
