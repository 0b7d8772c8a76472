"""Tests of the TextCraft-Synth node environment: tools, errors, fork, shared inventory, judge."""
import collections
import json
import types

import pytest

from rao_jax.envs import registry
from rao_jax.envs.base import PromptParts
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth.world import Item, Recipe, World, WorldConfig
from rao_jax.envs.tool_safety import ERROR_PREFIX


def _item(name, tier, ingredients=None, result_count=1):
  recipe = None if ingredients is None else Recipe(tuple(sorted(ingredients.items())), result_count)
  return Item(name=name, domain="metal", tier=tier, recipe=recipe)


# A hand-made world: plank <- 1 log (makes 4); stick <- 2 plank (makes 4); box <- 2 plank + 1 stick.
WORLD = World(config=WorldConfig(seed=0, items_per_domain_tier=1, max_tier=3), items=types.MappingProxyType({
    "log": _item("log", 0), "ore": _item("ore", 0),
    "plank": _item("plank", 1, {"log": 1}, 4),
    "stick": _item("stick", 2, {"plank": 2}, 4),
    "box": _item("box", 3, {"plank": 2, "stick": 1}, 1),
}))


def _root(inventory=None, targets=None):
  inventory = env_lib.SharedInventory({"log": 5, "ore": 2} if inventory is None else inventory)
  return env_lib.TextCraftNode(WORLD, inventory, targets or {"box": 2})


def test_craft_success_consumes_and_produces():
  node = _root()
  assert node.craft({"log": 2}, ("plank", 8)) == "Crafted 8 plank. Inventory now has 8 plank."
  assert node.view_inventory() == {"log": 3, "ore": 2, "plank": 8}
  assert node.craft(ingredients={"plank": 2}, target=["stick", 4]).startswith("Crafted 4 stick")
  assert node.view_inventory() == {"log": 3, "ore": 2, "plank": 6, "stick": 4}


class HostileDict(dict):
  def items(self):
    raise RuntimeError("boom")

  def __eq__(self, other):
    raise RuntimeError("boom")

  def keys(self):
    raise RuntimeError("boom")


class HostileKey:
  def __hash__(self):
    return hash("log")

  def __eq__(self, other):
    raise RuntimeError("boom")


class HostileTuple(tuple):
  def __iter__(self):
    raise RuntimeError("boom")

  def __len__(self):
    raise RuntimeError("boom")


@pytest.mark.parametrize("args, kwargs, message", [
    (({"log": 1}, ("plank", 3)), {}, "multiple of 4"),
    (({"log": 1}, ("plank", 0)), {}, "int in [1,"),
    (({"log": 1}, ("plank", -4)), {}, "int in [1,"),
    (({"log": 1}, ("plank", True)), {}, "got True"),
    (({"log": 1}, ("plank", 4.0)), {}, "got 4.0"),
    (({"log": 1}, ("plank", "4")), {}, "got '4'"),
    (({"log": 1}, ("plank", None)), {}, "got None"),
    (({"log": 1}, ("plank", 10**30)), {}, "very large"),
    (({"log": 1}, ("plank", 4 * 10**9)), {}, "int in [1,"),
    (({"log": 1}, ("nothing", 4)), {}, "unknown item 'nothing'"),
    (({"log": 1}, ("log", 1)), {}, "base material"),
    (({"log": 1}, "plank"), {}, "pair (item, total)"),
    (({"log": 1}, ("plank", 4, 1)), {}, "pair (item, total)"),
    (({"log": 1}, (["plank"], 4)), {}, "must be an item name"),
    (([("log", 1)], ("plank", 4)), {}, "must be a dict"),
    ((None, ("plank", 4)), {}, "must be a dict"),
    (({}, ("plank", 4)), {}, "missing log"),
    (({"log": 2}, ("plank", 4)), {}, "log needs 1, got 2"),
    (({"log": 1, "ore": 1}, ("plank", 4)), {}, "'ore' is not in the recipe"),
    (({"log": True}, ("plank", 4)), {}, "units of 'log'"),
    (({"log": 1.0}, ("plank", 4)), {}, "units of 'log'"),
    (({"log": 0}, ("plank", 4)), {}, "units of 'log'"),
    (({1: 1}, ("plank", 4)), {}, "names must be str"),
    (({HostileKey(): 1}, ("plank", 4)), {}, "names must be str"),
    (({"log": 10}, ("plank", 40)), {}, "not enough in the inventory: log (need 10, have 5)"),
    (({"log": 1}, ("plank", 4), 3), {}, "bad arguments to craft(ingredients, target)"),
    (({"log": 1},), {"target": ("plank", 4), "extra": 1}, "bad arguments"),
    ((), {}, "bad arguments"),
    (({"log": 1},), {"ingredients": {}}, "bad arguments"),
    (({str(i): 1 for i in range(100)}, ("plank", 4)), {}, "too many ingredients"),
    (({"log": 1}, ("x" * 10_000, 4)), {}, "unknown item"),
    (({"log": 1}, HostileTuple(("plank", 4))), {}, "Crafted"),  # Read without its overrides.
])
def test_craft_errors_leave_inventory_unchanged(args, kwargs, message):
  node = _root()
  before = node.view_inventory()
  result = node.craft(*args, **kwargs)
  assert isinstance(result, str) and message in result
  if message != "Crafted":
    assert result.startswith(ERROR_PREFIX)
    assert node.view_inventory() == before


def test_craft_reads_dict_subclasses_without_their_overrides():
  node = _root()
  assert node.craft(HostileDict(log=1), ("plank", 4)).startswith("Crafted")
  assert node.craft(collections.OrderedDict(log=1), ("plank", 4)).startswith("Crafted")


def test_error_message_names_the_expected_ingredients():
  message = _root().craft({"plank": 1}, ("box", 2))
  assert "Expected {'plank': 4, 'stick': 2}" in message


def test_get_info_reports_recipes_inventory_and_unknown_items():
  node = _root()
  info = node.get_info(["box", "log", "nope"])
  assert info == [
      {"name": "box", "can_craft": True, "is_base": False, "in_inventory": 0, "crafting_depth": 3,
       "recipes": [{"ingredients": {"plank": 2, "stick": 1}, "result_count": 1}]},
      {"name": "log", "can_craft": False, "is_base": True, "in_inventory": 5, "crafting_depth": 0,
       "recipes": []},
      {"name": "nope", "error": "unknown item"},
  ]
  assert node.get_info(items="plank")[0]["recipes"][0]["result_count"] == 4  # One name is fine.
  json.dumps(info)


def test_get_info_returns_fresh_copies():
  node = _root()
  node.get_info(["plank"])[0]["recipes"][0]["ingredients"]["log"] = 99
  node.view_inventory()["log"] = 99
  assert node.get_info(["plank"])[0]["recipes"][0]["ingredients"] == {"log": 1}
  assert node.view_inventory()["log"] == 5


@pytest.mark.parametrize("items, message", [
    (None, "must be a list"), ([], "is empty"), ([1], "must be str"), (["a"] * 65, "too many"),
    ({"box": 1}, "must be a list"),
])
def test_get_info_errors(items, message):
  result = _root().get_info(items)
  assert result.startswith(ERROR_PREFIX) and message in result


def test_view_inventory_rejects_arguments():
  assert _root().view_inventory(1).startswith(ERROR_PREFIX)


def test_fork_shares_the_inventory_and_snapshots_targets():
  root = _root()
  child = root.fork({"plank": 4}, context="Use logs only.")
  sibling = root.fork(targets={"stick": 4})
  assert child.goal == "Craft the following items: 4x plank\nUse logs only."
  assert sibling.goal == "Craft the following items: 4x stick"
  child.craft({"log": 2}, ("plank", 8))
  assert root.view_inventory()["plank"] == 8 and sibling.view_inventory()["plank"] == 8
  sibling.craft({"plank": 2}, ("stick", 4))  # A sibling consumes the child's planks.
  assert child.judge("done") == 1.0  # The child made 8 >= 4 planks since its fork.
  assert sibling.judge("done") == 1.0
  late = root.fork({"plank": 4})  # Forked now: the 6 planks held already do not count.
  assert late.judge("done") == 0.0
  late.craft({"log": 1}, ("plank", 4))
  assert late.judge("done") == 1.0


def test_child_consumption_by_a_sibling_spoils_its_count():
  root = _root()
  child = root.fork({"plank": 4})
  sibling = root.fork({"stick": 4})
  child.craft({"log": 1}, ("plank", 4))
  sibling.craft({"plank": 2}, ("stick", 4))
  assert child.judge("done") == 0.0  # Only 2 planks more than at its fork.


@pytest.mark.parametrize("args, kwargs, message", [
    (({},), {}, "is empty"),
    ((None,), {}, "must be a dict"),
    ((["plank"],), {}, "must be a dict"),
    (({"plank": 0},), {}, "count of plank"),
    (({"plank": True},), {}, "count of plank"),
    (({"plank": 2.5},), {}, "count of plank"),
    (({"nope": 1},), {}, "unknown item"),
    (({3: 1},), {}, "must be an item name"),
    (({"plank": 1},), {"context": 5}, "context must be a str"),
    (({"plank": 1},), {"context": "x" * 5000}, "too long"),
    (({f"x{i}": 1 for i in range(20)},), {}, "too many targets"),
    (({"plank": 1}, "", 3), {}, "bad arguments to launch_subagent(targets, context='')"),
    ((), {"parent": 1}, "bad arguments"),
])
def test_fork_errors(args, kwargs, message):
  result = _root().fork(*args, **kwargs)
  assert isinstance(result, str) and result.startswith(ERROR_PREFIX) and message in result


def test_fork_refuses_base_targets_and_accepts_none_context():
  # No tool makes a base material, so a child asked for one could never succeed: the launch is refused.
  refused = _root().fork({"log": 1})
  assert isinstance(refused, str) and "log is a base material" in refused
  child = _root().fork({"plank": 4}, None)
  assert isinstance(child, env_lib.TextCraftNode) and child.context == "" and child.judge("done") == 0.0


@pytest.mark.parametrize("finish_value, expected", [
    ("Crafted 2x box.", 1.0), ("", 0.0), ("   \n", 0.0), (None, 0.0), (True, 0.0), (1, 0.0),
    (["done"], 0.0), ({"done": True}, 0.0),
])
def test_judge_needs_a_non_blank_string(finish_value, expected):
  node = _root(inventory={"log": 10})
  node.craft({"log": 2}, ("plank", 8))
  node.craft({"plank": 2}, ("stick", 4))
  node.craft({"plank": 4, "stick": 2}, ("box", 2))
  assert node.judge(finish_value) == expected


def test_judge_ignores_targets_held_before_the_fork():
  node = _root(inventory={"box": 5})
  assert node.judge("done") == 0.0


def test_prompt_parts_with_and_without_delegation():
  node = _root()
  flat, recursive = node.prompt_parts(False), node.prompt_parts(True)
  assert isinstance(flat, PromptParts) and flat.delegation_rules == ""
  assert "launch_subagent" not in flat.tool_docs and "launch_subagent" in recursive.tool_docs
  assert "shared" in recursive.delegation_rules
  for text in ("craft(", "get_info(", "view_inventory(", "finish("):
    assert text in flat.tool_docs
  assert "multiple of the recipe's result_count" in flat.rules
  assert flat.goal == "Craft the following items: 2x box"
  assert node.namespace_variables() == {}


def test_make_root_environment_through_the_registry():
  task = {"targets": {"box": 1}, "inventory": {"log": 3}, "difficulty": "easy", "tier": 3,
          "gold_plan": [["plank", 1], ["stick", 1], ["box", 1]]}
  with pytest.raises(KeyError, match="unknown in world"):
    registry.make_root_environment("textcraft_synth", {"world": "small"}, task)
  with pytest.raises(ValueError, match="unknown TextCraft-Synth env_config keys"):
    env_lib.make_root_environment({"world": "small", "x": 1}, task)
  from rao_jax.envs.textcraft_synth import tasks as tasks_lib, world as world_lib
  world = world_lib.get_world({"seed": 3, "items_per_domain_tier": 2, "max_tier": 4})
  real = tasks_lib.build_splits(world, tasks_lib.TaskConfig(num_train=4, num_val=0))["train"][0]
  node = registry.make_root_environment(
      "textcraft_synth", {"world": {"seed": 3, "items_per_domain_tier": 2, "max_tier": 4}}, real.to_dict())
  assert node.world is world and node.view_inventory() == dict(real.inventory)
  assert node.goal == real.goal_text()


def test_shared_inventory_rejects_bad_counts():
  with pytest.raises(ValueError):
    env_lib.SharedInventory({"log": -1})
  with pytest.raises(ValueError):
    env_lib.SharedInventory({"log": True})
