"""The TextCraft-Synth node environment: tools, fork with a shared inventory, and judging.

One `TextCraftNode` per agent instance. Every node of a tree holds the *same* `SharedInventory`
object, so a child's craft is visible at once to its parent and siblings (and siblings can consume
each other's materials). A node remembers, at its fork, how many of its target items the inventory
held; it succeeds iff it finished with a non-empty message and the inventory has grown by the
required amount of every target since then (TEXTCRAFT_SYNTH.md, "Success").

The tools are called by hostile model-written code. Each one binds its arguments, validates them
with exact type checks (a `bool` is not a count, a `str` subclass is not a name) and reads
containers through the base classes' own methods, so no overridden method of an argument ever runs;
misuse comes back as an "Error: ..." string and leaves the inventory unchanged. Results are fresh
plain dicts, lists, strs and ints.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from rao_jax.envs.base import JSONLike, PromptParts
from rao_jax.envs.tool_safety import ToolError, safe_tool as _safe_tool, show as _show
from rao_jax.envs.textcraft_synth import tasks as tasks_lib
from rao_jax.envs.textcraft_synth.world import Item, World, get_world

# Limits on what a tool call may ask for: large enough for any real task, small enough that a
# hostile call cannot make a tool do unbounded work or build huge strings.
MAX_COUNT = 10**9
MAX_NAME_CHARS = 100
MAX_ITEMS_PER_CALL = 64
MAX_TARGETS_PER_FORK = 16
MAX_CONTEXT_CHARS = 4000

# What `get_info` returns per item: "full" is the spec's record (name, can_craft, is_base, in_inventory,
# crafting_depth, recipes); "compact" maps each name to its recipe's ingredients {item: units}, or to
# "base" / "unknown item" (the toy preset's short observations, docs/textcraft_synth.md).
INFO_STYLES = ("full", "compact")


class SharedInventory:
  """Item counts shared by reference by every node of one tree (only positive counts are stored)."""

  def __init__(self, counts: Mapping[str, int] = ()):
    self._counts: dict[str, int] = {}
    for item, count in dict(counts).items():
      if not isinstance(item, str) or not _is_count(count, allow_zero=True):
        raise ValueError(f"inventory entries must be (str, int >= 0), got {item!r}: {count!r}")
      if count:
        self._counts[item] = count

  def count(self, item: str) -> int:
    return self._counts.get(item, 0)

  def as_dict(self) -> dict[str, int]:
    """A fresh copy of the positive counts, sorted by item name."""
    return dict(sorted(self._counts.items()))

  def apply(self, consumed: Mapping[str, int], produced: Mapping[str, int]) -> None:
    """Removes `consumed` and adds `produced` atomically; ValueError (nothing changes) on shortfall."""
    short = {item: units for item, units in consumed.items() if self.count(item) < units}
    if short:
      raise ValueError(f"not enough of {sorted(short)}")
    for item, units in consumed.items():
      self._counts[item] -= units
      if not self._counts[item]:
        del self._counts[item]
    for item, units in produced.items():
      self._counts[item] = self.count(item) + units


def _is_count(value: object, *, allow_zero: bool = False) -> bool:
  """An exact int (not bool) in [1, MAX_COUNT] (or [0, MAX_COUNT] with `allow_zero`)."""
  return type(value) is int and (0 if allow_zero else 1) <= value <= MAX_COUNT



def _plain_pairs(value: object) -> list[tuple[object, object]] | None:
  """The (key, value) pairs of a dict (or dict subclass, read without its overrides), else None."""
  if not issubclass(type(value), dict):
    return None
  return list(dict.items(value))


def _plain_list(value: object) -> list[object] | None:
  """The elements of a list or tuple (subclasses read without their overrides), else None."""
  if issubclass(type(value), list):
    return list.copy(value)
  if issubclass(type(value), tuple):
    return list(tuple.__getitem__(value, slice(None)))
  return None




class TextCraftNode:
  """The environment of one node: tools over the shared inventory, fork, and the judge."""

  def __init__(self, world: World, inventory: SharedInventory, targets: Mapping[str, int],
               context: str = "", *, info_style: str = "full"):
    if info_style not in INFO_STYLES:
      raise ValueError(f"info_style={info_style!r} is not one of {INFO_STYLES}")
    self.world = world
    self.inventory = inventory
    self.targets: dict[str, int] = dict(targets)
    self.context = context
    self.info_style = info_style
    # Target counts at the fork: items held before the node started do not count toward success.
    self.counts_at_fork = {item: inventory.count(item) for item in self.targets}

  # ----------------------------------------------------------------------------------------- tools

  def tools(self) -> dict[str, Callable[..., Any]]:
    return {"craft": self.craft, "get_info": self.get_info, "view_inventory": self.view_inventory}

  def namespace_variables(self) -> dict[str, JSONLike]:
    return {}

  def _known_item(self, name: object, role: str) -> Item:
    if type(name) is not str:
      raise ToolError(f"{role} must be an item name (str), got {_show(name)}")
    if len(name) > MAX_NAME_CHARS or not self.world.is_known(name):
      raise ToolError(f"unknown item {_show(name)}")
    return self.world.item(name)

  @_safe_tool
  def craft(self, ingredients, target) -> str:
    """Crafts `total` units of `item`, where target = (item, total), consuming `ingredients`."""
    pairs = _plain_pairs(ingredients)
    if pairs is None:
      raise ToolError(f"ingredients must be a dict {{item: units}}, got {_show(ingredients)}")
    if len(pairs) > MAX_ITEMS_PER_CALL:
      raise ToolError(f"too many ingredients ({len(pairs)})")
    target_pair = _plain_list(target)
    if target_pair is None or len(target_pair) != 2:
      raise ToolError(f"target must be a pair (item, total), got {_show(target)}")
    name, total = target_pair
    item = self._known_item(name, "the target item")
    if item.recipe is None:
      raise ToolError(f"{name} is a base material and cannot be crafted")
    if not _is_count(total):
      raise ToolError(f"the total to craft must be an int in [1, {MAX_COUNT}], got {_show(total)}")
    result_count = item.recipe.result_count
    if total % result_count:
      lower = total - total % result_count
      options = f"{lower} or {lower + result_count}" if lower else f"{result_count}"
      raise ToolError(f"one craft of {name} makes {result_count}; total must be a multiple of "
                      f"{result_count} (e.g. {options}), got {total}")
    crafts = total // result_count
    expected = {ingredient: units * crafts for ingredient, units in item.recipe.ingredients}
    given: dict[str, int] = {}
    for key, units in pairs:
      if type(key) is not str:
        raise ToolError(f"ingredient names must be str, got {_show(key)}")
      if not _is_count(units):
        raise ToolError(f"units of {_show(key)} must be an int in [1, {MAX_COUNT}], got {_show(units)}")
      given[key] = units
    if given != expected:
      problems = [f"missing {i}" for i in expected if i not in given]
      problems += [f"{_show(i)} is not in the recipe" for i in given if i not in expected]
      problems += [f"{i} needs {expected[i]}, got {given[i]}" for i in given
                   if i in expected and given[i] != expected[i]]
      raise ToolError(f"wrong ingredients for {total} {name} ({crafts} craft(s) of "
                      f"{_format_counts(item.recipe.ingredient_dict())} -> {result_count}): "
                      f"{'; '.join(problems)}. Expected {_format_counts(expected)}")
    short = [f"{i} (need {units}, have {self.inventory.count(i)})"
             for i, units in expected.items() if self.inventory.count(i) < units]
    if short:
      raise ToolError(f"not enough in the inventory: {', '.join(short)}")
    self.inventory.apply(expected, {name: total})
    return f"Crafted {total} {name}. Inventory now has {self.inventory.count(name)} {name}."

  @_safe_tool
  def get_info(self, items) -> list[dict] | dict | str:
    """Per item: name, can_craft (has a recipe), is_base, in_inventory, crafting_depth (tier label),
    recipes; an unknown name gets {"name", "error"}. A single name is accepted as a one-item list.
    With the "compact" info style: {name: ingredients {item: units} | "base" | "unknown item"}."""
    names = [items] if type(items) is str else _plain_list(items)
    if names is None:
      raise ToolError(f"items must be a list of item names, got {_show(items)}")
    if not names:
      raise ToolError("items is empty; pass a list of item names")
    if len(names) > MAX_ITEMS_PER_CALL:
      raise ToolError(f"too many items ({len(names)} > {MAX_ITEMS_PER_CALL}); ask in smaller batches")
    for name in names:
      if type(name) is not str:
        raise ToolError(f"item names must be str, got {_show(name)}")
    if self.info_style == "compact":
      return {name[:MAX_NAME_CHARS]: self._compact_info(name) for name in names}
    return [self._item_info(name) for name in names]

  def _compact_info(self, name: str) -> dict[str, int] | str:
    if len(name) > MAX_NAME_CHARS or not self.world.is_known(name):
      return "unknown item"
    recipe = self.world.item(name).recipe
    return "base" if recipe is None else recipe.ingredient_dict()

  def _item_info(self, name: str) -> dict:
    if len(name) > MAX_NAME_CHARS or not self.world.is_known(name):
      return {"name": name[:MAX_NAME_CHARS], "error": "unknown item"}
    item = self.world.item(name)
    recipes = [] if item.recipe is None else [
        {"ingredients": item.recipe.ingredient_dict(), "result_count": item.recipe.result_count}]
    return {"name": name, "can_craft": item.recipe is not None, "is_base": item.is_base,
            "in_inventory": self.inventory.count(name), "crafting_depth": item.tier,
            "recipes": recipes}

  @_safe_tool
  def view_inventory(self) -> dict[str, int]:
    """The whole inventory, {item: count}, sorted by name."""
    return self.inventory.as_dict()

  # --------------------------------------------------------------------------- fork and judge

  def fork(self, *args: Any, **kwargs: Any) -> "TextCraftNode | str":
    """The environment side of `launch_subagent(targets, context="")`: a child on this inventory."""
    return _fork(self, *args, **kwargs)

  def judge(self, finish_value: JSONLike) -> float:
    """1.0 iff `finish_value` is a non-blank str and every target grew by its count since the fork.

    Only a string is a finish message (the tool is `finish(message: str)`); any other JSON value,
    like an empty or whitespace-only string, counts as not finished.
    """
    if type(finish_value) is not str or not finish_value.strip():
      return 0.0
    done = all(self.inventory.count(item) - self.counts_at_fork[item] >= count
               for item, count in self.targets.items())
    return 1.0 if done else 0.0

  # ---------------------------------------------------------------------------------- prompts

  @property
  def goal(self) -> str:
    goal = tasks_lib.format_goal(self.targets)
    return f"{goal}\n{self.context.strip()}" if self.context.strip() else goal

  def prompt_parts(self, delegation: bool) -> PromptParts:
    tool_docs = TOOL_DOCS if self.info_style == "full" else TOOL_DOCS.replace(_FULL_INFO_DOC, _COMPACT_INFO_DOC)
    return PromptParts(
        rules=RULES, delegation_rules=DELEGATION_RULES if delegation else "", goal=self.goal,
        tool_docs=tool_docs + (DELEGATION_TOOL_DOCS if delegation else ""))


@functools.partial(_safe_tool, shown_name="launch_subagent")
def _fork(parent: TextCraftNode, targets, context="") -> TextCraftNode | str:
  pairs = _plain_pairs(targets)
  if pairs is None:
    raise ToolError(f"targets must be a dict {{item: count}}, got {_show(targets)}")
  if not pairs:
    raise ToolError("targets is empty; name at least one item to craft")
  if len(pairs) > MAX_TARGETS_PER_FORK:
    raise ToolError(f"too many targets ({len(pairs)} > {MAX_TARGETS_PER_FORK})")
  if context is None:
    context = ""
  if type(context) is not str:
    raise ToolError(f"context must be a str, got {_show(context)}")
  if len(context) > MAX_CONTEXT_CHARS:
    raise ToolError(f"context is too long ({len(context)} > {MAX_CONTEXT_CHARS} characters)")
  child_targets: dict[str, int] = {}
  for name, count in pairs:
    if parent._known_item(name, "a target").is_base:
      raise ToolError(f"{name} is a base material and cannot be crafted; a sub-agent's targets must be craftable")
    if not _is_count(count):
      raise ToolError(f"count of {name} must be an int in [1, {MAX_COUNT}], got {_show(count)}")
    child_targets[name] = count
  return TextCraftNode(parent.world, parent.inventory, child_targets, context, info_style=parent.info_style)


def _format_counts(counts: Mapping[str, int]) -> str:
  return "{" + ", ".join(f"{item!r}: {units}" for item, units in counts.items()) + "}"


RULES = """\
Crafting game. Each item has one recipe: craft(ingredients, (item, total)) consumes ingredients \
from the inventory and adds total units of item. Base materials cannot be crafted.
- total must be a multiple of the recipe's result_count; one craft makes result_count units.
- ingredients must list exactly the recipe's items, each with units * total / result_count.
- You craft on top of what you own: the inventory is not shown, check it with view_inventory() \
and look up recipes with get_info(...).
- Only new units count: you succeed when the goal's items have grown by the asked amounts."""

DELEGATION_RULES = """\
Delegating the intermediate ingredients of your goal to sub-agents is encouraged: \
launch_subagent({item: count}) asks for that many new units. The inventory is shared: what a \
sub-agent crafts is at once in your inventory, and sub-agents consume from the same materials. \
Run sub-agents in parallel when their recipes share no crafted item and enough materials exist \
for all; otherwise await them one at a time."""

_FULL_INFO_DOC = "get_info(items: list) -> list[dict]: per item: can_craft, is_base, in_inventory, crafting_depth, recipes."
_COMPACT_INFO_DOC = "get_info(items: list) -> dict: {item: its recipe's ingredients {item: units}, or 'base'}."
TOOL_DOCS = f"""\
craft(ingredients: dict, target: tuple) -> str: craft target = (item, total) from ingredients {{item: units}}.
{_FULL_INFO_DOC}
view_inventory() -> dict: the inventory {{item: count}}.
finish(message: str): end your episode; message (non-empty) is your result."""

DELEGATION_TOOL_DOCS = """
await launch_subagent(targets: dict, context: str = "") -> str: a sub-agent crafts targets \
{item: count} (context: optional extra instructions); returns its finish message or an error."""


def make_root_environment(env_config: Mapping[str, Any], task: Mapping[str, Any]) -> TextCraftNode:
  """The root node of `task` (a `Task.to_dict()`) in the world of `env_config`.

  `env_config["world"]` is a preset name ("small", "paper", "toy") or a mapping of `WorldConfig` fields;
  worlds are cached per process. `env_config["info_style"]` (default "full") is one of INFO_STYLES.
  Raises ValueError / KeyError on a bad config or task (trusted input).
  """
  unknown = sorted(set(env_config) - {"world", "info_style"})
  if unknown:
    raise ValueError(f"unknown TextCraft-Synth env_config keys {unknown}; known: ['info_style', 'world']")
  world_spec = env_config.get("world", "paper")
  world = get_world(dict(world_spec) if isinstance(world_spec, Mapping) else world_spec)
  parsed = tasks_lib.Task.from_dict(task)
  for item in list(parsed.targets) + list(parsed.inventory):
    if not world.is_known(item):
      raise KeyError(f"task names item {item!r}, unknown in world {world.config}")
  for item, count in parsed.targets.items():
    if not _is_count(count):
      raise ValueError(f"target count of {item!r} must be in [1, {MAX_COUNT}], got {count!r}")
  return TextCraftNode(world, SharedInventory(parsed.inventory), parsed.targets,
                       info_style=env_config.get("info_style", "full"))
