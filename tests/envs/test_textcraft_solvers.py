"""Tests of the expert solvers and the trusted cell runner of TextCraft-Synth."""
import asyncio
import collections
import json
import types

import pytest

from rao_jax.agent import episode, turn_format
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers
from rao_jax.envs.textcraft_synth import tasks as tasks_lib
from rao_jax.envs.trusted_runner import TrustedCellRunner
from rao_jax.envs.textcraft_synth.world import Item, Recipe, World, WorldConfig, get_world


def _item(name, tier, ingredients=None, result_count=1):
  recipe = None if ingredients is None else Recipe(tuple(sorted(ingredients.items())), result_count)
  return Item(name=name, domain="metal", tier=tier, recipe=recipe)


# crate <- gear + rope (independent sub-trees); chest <- gear + hinge (both need nails).
WORLD = World(config=WorldConfig(seed=0, items_per_domain_tier=1, max_tier=3), items=types.MappingProxyType({
    "log": _item("log", 0), "ore": _item("ore", 0),
    "nail": _item("nail", 1, {"ore": 1}, 3), "fiber": _item("fiber", 1, {"log": 1}, 2),
    "gear": _item("gear", 2, {"nail": 2}, 1), "rope": _item("rope", 2, {"fiber": 3}, 1),
    "hinge": _item("hinge", 2, {"nail": 1}, 2),
    "crate": _item("crate", 3, {"gear": 1, "rope": 2}, 1),
    "chest": _item("chest", 3, {"gear": 2, "hinge": 1}, 1),
}))
DELEGATE_ALL = solvers.SolverConfig(delegate=True, max_own_crafts=1)


def _root(targets, inventory):
  return env_lib.TextCraftNode(WORLD, env_lib.SharedInventory(inventory), targets)


def _assert_all_succeed(transcript):
  for node in transcript.nodes():
    assert node.success == 1.0, (node.goal, node.turns[-3:])
    assert node.finish_message and node.turns[-1].output is None
    for turn in node.turns:  # Cells a sandbox allows: no imports, no dunders, no errors.
      assert "import" not in turn.code and "__" not in turn.code
      assert not (turn.output or "").startswith(("Error", "Traceback")) and "Error:" not in (turn.output or "")


def test_flat_transcript_is_real_and_in_turn_format():
  root = _root({"crate": 2}, {"ore": 5, "log": 9})
  transcript = solvers.solve(root, solvers.FLAT)
  _assert_all_succeed(transcript)
  assert transcript.children == [] and not transcript.delegation
  assert transcript.turns[0].output == repr({"log": 9, "ore": 5})
  codes = [turn.code for turn in transcript.turns]
  assert codes[1] == 'get_info(["crate"])' and codes[2] == 'get_info(["gear", "rope"])'
  assert codes[-1] == 'finish("Crafted 2x crate.")'
  assert transcript.turns[-2].output == "Crafted 2 crate. Inventory now has 2 crate."
  assert all("await" not in code and "import" not in code and "__" not in code for code in codes)
  text = episode.assistant_text(transcript.turns[0])
  assert text.startswith(turn_format.THOUGHT_OPEN) and text.endswith(turn_format.CODE_CLOSE)
  assert episode.observation_text(1, transcript.turns[0].output).startswith(turn_format.observation_header(1))
  assert root.view_inventory()["crate"] == 2


def test_recursive_independent_children_run_in_one_gather_cell():
  root = _root({"crate": 1}, {"ore": 5, "log": 9})
  transcript = solvers.solve(root, DELEGATE_ALL)
  _assert_all_succeed(transcript)
  gather_cells = [i for i, turn in enumerate(transcript.turns, 1) if "asyncio.gather" in turn.code]
  assert len(gather_cells) == 1
  assert [child.targets for child in transcript.children] == [{"gear": 1}, {"rope": 2}]
  assert all(child.launched_by_cell == gather_cells[0] for child in transcript.children)
  assert transcript.turns[gather_cells[0] - 1].output == "['Crafted 1x gear.', 'Crafted 2x rope.']"
  gear, rope = transcript.children
  assert gear.turns[0].output == rope.turns[0].output  # Both looked before either crafted: concurrent.
  assert transcript.turns[-2].code.endswith('("crate", 1)))')  # The root crafts its own target last.
  assert max(node.depth for node in transcript.nodes()) == 2  # gear -> nail, rope -> fiber.


def test_recursive_children_sharing_an_intermediate_run_one_at_a_time():
  root = _root({"chest": 1}, {"ore": 10})
  transcript = solvers.solve(root, DELEGATE_ALL)
  _assert_all_succeed(transcript)
  assert not any("asyncio.gather" in turn.code for turn in transcript.turns)
  launches = [child.launched_by_cell for child in transcript.children]
  assert len(launches) == 2 and launches[0] < launches[1]


def test_scarce_inventory_reuses_leftovers_of_an_earlier_child():
  # 4 nails for gears + 1 for the hinge: two crafts of nail (6) need 2 ore; separate crafts need 3.
  plan = solvers.plan_node(WORLD, {"chest": 1}, {"ore": 2}, 0, DELEGATE_ALL)
  assert [len(wave) for wave in plan.waves] == [1, 1] and plan.claims == {"ore": 2}
  transcript = solvers.solve(_root({"chest": 1}, {"ore": 2}), DELEGATE_ALL)
  _assert_all_succeed(transcript)


def test_infeasible_inventory_raises():
  with pytest.raises(solvers.InfeasibleError):
    solvers.solve(_root({"chest": 1}, {"ore": 1}), solvers.RECURSIVE)


def test_max_depth_zero_is_flat_and_prompts_follow_delegation():
  config = solvers.SolverConfig(delegate=True, max_depth=0, max_own_crafts=1)
  transcript = solvers.solve(_root({"crate": 1}, {"ore": 5, "log": 9}), config)
  assert transcript.children == [] and not transcript.delegation
  assert "launch_subagent" not in transcript.prompt["tool_docs"]
  recursive = solvers.solve(_root({"crate": 1}, {"ore": 5, "log": 9}), DELEGATE_ALL)
  assert "launch_subagent" in recursive.prompt["tool_docs"]


def test_verbosity_options():
  base = solvers.solve(_root({"crate": 2}, {"ore": 5, "log": 9}), solvers.FLAT)
  terse = solvers.solve(_root({"crate": 2}, {"ore": 5, "log": 9}),
                        solvers.SolverConfig(crafts_per_cell=3, use_get_info=False))
  _assert_all_succeed(terse)
  assert not any("get_info" in turn.code for turn in terse.turns)
  num_crafts = sum(turn.code.count("craft(") for turn in base.turns)
  assert sum(turn.code.count("craft(") for turn in terse.turns) == num_crafts == 5
  assert len(terse.turns) == 1 + 2 + 1  # Inventory, two craft cells, finish.


def test_transcripts_are_json_and_deterministic():
  def run():
    return solvers.solve(_root({"chest": 2}, {"ore": 10, "log": 2}), DELEGATE_ALL).to_dict()
  first = run()
  assert json.loads(json.dumps(first)) == first == run()
  restored = solvers.Transcript.from_dict(first)
  assert restored.to_dict() == first and len(list(restored.nodes())) == len(list(
      solvers.Transcript.from_dict(first).nodes()))


def test_config_validation():
  with pytest.raises(ValueError):
    solvers.SolverConfig(crafts_per_cell=0)
  with pytest.raises(ValueError):
    solvers.SolverConfig(max_depth=-1)


def test_trusted_runner_semantics():
  async def double(x):
    await asyncio.sleep(0)
    return 2 * x

  async def main():
    runner = TrustedCellRunner({"double": double})
    assert await runner.run("x = 3\nprint('x is', x)\nx + 1") == "x is 3\n4"
    assert await runner.run("a, b = await asyncio.gather(double(x), double(1))\n[a, b]") == "[6, 2]"
    assert await runner.run("await double(5)") == "10"
    assert await runner.run("y = None\ny") == ""
    assert await runner.run("print('before')\n1 / 0") == "before\nZeroDivisionError: division by zero"
    assert (await runner.run("def f(:")).startswith("SyntaxError")
    assert await runner.run("x") == "3"  # The namespace persists across cells.
  asyncio.run(main())


def _sample(tasks, per_difficulty):
  by_difficulty = collections.defaultdict(list)
  for task in tasks:
    by_difficulty[task.difficulty].append(task)
  return [task for group in by_difficulty.values() for task in group[:per_difficulty]]


def _solve_task(world_name, task, config):
  root = env_lib.make_root_environment({"world": world_name}, task.to_dict())
  transcript = solvers.solve(root, config)
  _assert_all_succeed(transcript)
  return transcript


@pytest.fixture(scope="module")
def small_splits():
  return tasks_lib.build_splits(get_world("small"), tasks_lib.TaskConfig())


def test_flat_solves_every_small_world_task(small_splits):
  for task in small_splits["train"] + small_splits["val"]:
    _solve_task("small", task, solvers.SolverConfig(use_get_info=False, crafts_per_cell=64))


def test_recursive_solves_a_sample_of_small_world_tasks(small_splits):
  sample = _sample(small_splits["val"], 5)
  for task in sample:
    config = solvers.RECURSIVE if task.difficulty != "extreme" else solvers.SolverConfig(
        delegate=True, max_own_crafts=32)
    transcript = _solve_task("small", task, config)
    if task.difficulty in ("medium", "hard"):
      assert transcript.children, task.to_dict()


def test_every_small_world_task_has_a_recursive_plan_that_fits(small_splits):
  # Planning is pure and cheap; acting plans out is what the sampled tests check.
  world = get_world("small")
  for task in small_splits["train"] + small_splits["val"]:
    if task.difficulty != "extreme":
      plan = solvers.plan_node(world, dict(task.targets), dict(task.inventory), 0, solvers.RECURSIVE)
      assert all(task.inventory.get(item, 0) >= units for item, units in plan.claims.items())


def test_scarce_exact_inventories_are_solved_recursively():
  # Exact inventories hold only what the flat gold plan consumes: children must reuse leftovers.
  tasks = tasks_lib.build_splits(
      get_world("small"), tasks_lib.TaskConfig(exact_inventory=True, num_train=40, num_val=0))["train"]
  for task in _sample(tasks, 4):
    if task.difficulty != "extreme":
      _solve_task("small", task, solvers.RECURSIVE)


def test_paper_world_sample_per_difficulty():
  tasks = tasks_lib.build_splits(get_world("paper"), tasks_lib.TaskConfig(num_train=40, num_val=0))["train"]
  for task in _sample(tasks, 1):
    _solve_task("paper", task, solvers.FLAT)
    config = solvers.RECURSIVE if task.difficulty in ("easy", "medium", "hard") else solvers.SolverConfig(
        delegate=True, max_own_crafts=32)
    _solve_task("paper", task, config)
