"""Tests of TextCraft-Synth tasks: requirements, gold plans, inventories and the train/val splits."""
import collections
import dataclasses
import json
import random
import statistics
import types

import pytest

from rao_jax.envs.textcraft_synth import stats
from rao_jax.envs.textcraft_synth import tasks as tasks_lib
from rao_jax.envs.textcraft_synth.tasks import (
    DIFFICULTIES, DIFFICULTY_TIERS, Task, TaskConfig, UnsolvableTaskError, base_requirements, build_splits,
    craft_counts, gold_plan, simulate_plan)
from rao_jax.envs.textcraft_synth.world import Item, Recipe, World, WorldConfig, get_world


@pytest.fixture(scope="module")
def small():
  return get_world("small")


@pytest.fixture(scope="module")
def small_splits(small):
  return build_splits(small, TaskConfig())


@pytest.fixture(scope="module")
def paper_splits():
  return build_splits(get_world("paper"), TaskConfig())


def _toy_world() -> World:
  """ore (base) -> plank (tier 1: 2 ore makes 3) -> box (tier 2: 1 plank + 1 ore makes 1)."""
  items = {
      "ore": Item("ore", "metal", 0, None),
      "plank": Item("plank", "metal", 1, Recipe((("ore", 2),), result_count=3)),
      "box": Item("box", "metal", 2, Recipe((("ore", 1), ("plank", 1)), result_count=1)),
  }
  return World(config=WorldConfig(items_per_domain_tier=1), items=types.MappingProxyType(items))


def test_requirements_and_gold_plan_by_hand():
  world = _toy_world()
  # 2 boxes: 2 crafts of box need 2 planks (1 craft of plank, 2 ore) and 2 ore: 4 ore in all.
  assert craft_counts(world, {"box": 2}) == {"box": 2, "plank": 1}
  assert base_requirements(world, {"box": 2}, over_provision=False) == {"ore": 4}
  # Ignoring result counts: 2 planks crafted one by one cost 4 ore, plus 2 ore for the boxes.
  assert base_requirements(world, {"box": 2}) == {"ore": 6}
  assert gold_plan(world, {"box": 2}, {"ore": 4}) == (("plank", 1), ("box", 2))
  assert simulate_plan(world, (("plank", 1), ("box", 2)), {"ore": 4}) == {"ore": 0, "plank": 1, "box": 2}
  with pytest.raises(UnsolvableTaskError, match="ore"):
    gold_plan(world, {"box": 2}, {"ore": 3})


@pytest.mark.parametrize("targets, error", [
    ({}, ValueError),
    ({"ore": 1}, ValueError),
    ({"diamond": 1}, KeyError),
    ({"box": 0}, ValueError),
    ({"box": 1.5}, ValueError),
])
def test_bad_targets_are_rejected(targets, error):
  with pytest.raises(error):
    base_requirements(_toy_world(), targets)


def test_simulate_plan_rejects_crafting_a_base():
  with pytest.raises(ValueError, match="base material"):
    simulate_plan(_toy_world(), (("ore", 1),), {"ore": 5})


def test_paper_split_sizes_match_the_spec(paper_splits):
  counts = {split: collections.Counter(task.difficulty for task in tasks) for split, tasks in paper_splits.items()}
  assert len(paper_splits["train"]) == 2522 and len(paper_splits["val"]) == 632
  assert [counts["train"][d] for d in DIFFICULTIES] == [588, 852, 544, 538]
  assert [counts["val"][d] for d in DIFFICULTIES] == [147, 213, 136, 136]


def test_paper_gold_plans_match_the_spec(paper_splits):
  spec = {"easy": 3.6, "medium": 21, "hard": 86, "extreme": 177}
  for difficulty, expected in spec.items():
    steps = [len(task.gold_plan) for task in paper_splits["train"] if task.difficulty == difficulty]
    assert statistics.fmean(steps) == pytest.approx(expected, rel=0.1)


def test_splits_share_no_target_and_hold_out_a_fifth_per_tier(small, small_splits):
  targets = {split: {item for task in tasks for item in task.targets} for split, tasks in small_splits.items()}
  assert targets["train"] and targets["val"] and not targets["train"] & targets["val"]
  pools = tasks_lib.split_target_items(small, seed=42, holdout_fraction=0.2)
  for tier in range(1, 13):
    items = small.items_by_tier(tier)
    num_val = sum(small.item(name).tier == tier for name in pools["val"])
    assert num_val == len(items) - int(len(items) * 0.8 + 1e-9)
  assert sorted(pools["train"] + pools["val"]) == sorted(n for n in small.items if not small.item(n).is_base)


def test_tasks_are_distinct_and_follow_difficulty_rules(small, small_splits):
  for tasks in small_splits.values():
    keys = [tuple(task.targets.items()) for task in tasks]
    assert len(keys) == len(set(keys))
    for task in tasks:
      (item, count), = task.targets.items()
      assert task.tier == small.item(item).tier and task.tier in DIFFICULTY_TIERS[task.difficulty]
      low, high = tasks_lib.TARGET_COUNT_RANGE[task.difficulty]
      assert low <= count <= high


def test_pools_run_out_so_every_item_and_count_appears_once(small, small_splits):
  pools = tasks_lib.split_target_items(small, seed=42, holdout_fraction=0.2)
  for split, tasks in small_splits.items():
    for difficulty, tiers in DIFFICULTY_TIERS.items():
      pool = [name for name in pools[split] if small.item(name).tier in tiers]
      low, high = tasks_lib.TARGET_COUNT_RANGE[difficulty]
      assert sum(task.difficulty == difficulty for task in tasks) == len(pool) * (high - low + 1)


def test_quota_and_attempt_limit():
  world = get_world("small")
  pool = world.items_by_tier(2)[:2]  # 2 items x 3 counts = 6 distinct tasks.
  sample = lambda factor, quota: tasks_lib._sample_difficulty(
      world, random.Random(0), pool, "easy", quota, TaskConfig(max_attempts_factor=factor))
  assert len(sample(30, 4)) == 4
  assert len(sample(30, 6)) == 6
  assert len(sample(1, 6)) < 6  # Six draws rarely give six distinct tasks; duplicates are rejected.


def test_inventory_covers_the_gold_plan(small, small_splits):
  for task in small_splits["train"] + small_splits["val"]:
    assert all(small.item(name).is_base for name in task.inventory)
    final = simulate_plan(small, task.gold_plan, task.inventory)
    assert all(final[item] >= count for item, count in task.targets.items())
    assert [small.item(name).tier for name, _ in task.gold_plan] == sorted(
        small.item(name).tier for name, _ in task.gold_plan)


def test_inventory_is_over_provisioned_with_buffer_and_distractors(small, small_splits):
  for task in small_splits["train"]:
    need = base_requirements(small, task.targets)
    exact = base_requirements(small, task.targets, over_provision=False)
    for name, units in need.items():
      assert exact[name] <= units <= task.inventory[name] <= units + max(1, units // 2)
    distractors = {name: units for name, units in task.inventory.items() if name not in need}
    assert 1 <= len(distractors) <= 3 and all(1 <= units <= 5 for units in distractors.values())
  ratio = statistics.fmean(
      sum(base_requirements(small, t.targets).values()) / sum(base_requirements(
          small, t.targets, over_provision=False).values()) for t in small_splits["train"])
  assert ratio > 2


def test_exact_inventory_option(small):
  splits = build_splits(small, TaskConfig(num_train=200, num_val=40, exact_inventory=True))
  for task in splits["train"]:
    final = simulate_plan(small, task.gold_plan, task.inventory)
    required = base_requirements(small, task.targets, over_provision=False)
    assert all(final[name] == 0 for name in required)  # The plan consumes every required unit.
    assert all(final[item] >= count for item, count in task.targets.items())
    assert 1 <= len(set(task.inventory) - set(required)) <= 3


def test_multi_target_option(small):
  splits = build_splits(small, TaskConfig(num_train=200, num_val=40, multi_target=True, max_targets=3))
  sizes = collections.Counter(len(task.targets) for task in splits["train"])
  assert set(sizes) == {2, 3}
  keys = [tuple(task.targets.items()) for task in splits["train"]]
  assert len(keys) == len(set(keys))
  for task in splits["train"]:
    tiers = [small.item(item).tier for item in task.targets]
    assert task.tier == max(tiers) and all(t in DIFFICULTY_TIERS[task.difficulty] for t in tiers)
    final = simulate_plan(small, task.gold_plan, task.inventory)
    assert all(final[item] >= count for item, count in task.targets.items())


def test_splits_are_deterministic_in_the_seed(small, small_splits):
  assert build_splits(small, TaskConfig()) == small_splits
  other = build_splits(small, TaskConfig(seed=1))
  assert other["val"] != small_splits["val"]


def test_task_dict_round_trip_and_goal(small_splits):
  task = small_splits["val"][0]
  restored = Task.from_dict(json.loads(json.dumps(task.to_dict())))
  assert restored == task and hash(restored) == hash(task)
  (item, count), = task.targets.items()
  assert task.goal_text() == f"Craft the following items: {count}x {item}"
  assert tasks_lib.format_goal({"m0_i5": 2, "c1_i3": 1}) == "Craft the following items: 2x m0_i5, 1x c1_i3"


@pytest.mark.parametrize("change", [
    {"targets": {"m0_i5": "2"}},
    {"inventory": []},
    {"gold_plan": "m0_i5"},
    {"gold_plan": [["m0_i5", 1, 2]]},
    {"difficulty": "impossible"},
    {"extra": 1},
])
def test_task_from_dict_rejects_bad_input(small_splits, change):
  with pytest.raises(ValueError):
    Task.from_dict({**small_splits["val"][0].to_dict(), **change})


def test_difficulty_of_tier():
  assert [tasks_lib.difficulty_of_tier(t) for t in (2, 4, 9, 12)] == ["easy", "medium", "hard", "extreme"]
  with pytest.raises(ValueError):
    tasks_lib.difficulty_of_tier(1)


@pytest.mark.parametrize("fields", [
    {"mix": (0.5, 0.5)},
    {"mix": (0.5, 0.5, 0.5, -0.5)},
    {"holdout_fraction": 0.0},
    {"max_attempts_factor": 0},
    {"multi_target": True, "max_targets": 1},
    {"distractor_units": (3, 1)},
    {"num_val": -1},
])
def test_task_config_rejects_bad_values(fields):
  with pytest.raises(ValueError):
    dataclasses.replace(TaskConfig(), **fields)


def test_stats_summary_of_the_small_setting():
  summary = stats.summary("small", TaskConfig(exact_inventory=True))
  tasks = summary["tasks"]
  assert summary["world"]["num_items"] == 422
  assert tasks["target_items_in_both_splits"] == 0
  assert sum(tasks["tasks_per_split_and_difficulty"]["val"].values()) == tasks["tasks_per_split"]["val"]
  assert set(tasks["mean_inventory_over_provisioning"]["train"].values()) == {1.0}
  assert all(ratio > 1 for ratio in tasks["mean_requirement_over_provisioning"]["train"].values())
  steps, crafts = tasks["mean_gold_plan_steps"]["train"], tasks["mean_gold_crafts"]["train"]
  assert all(steps[d] <= crafts[d] for d in DIFFICULTIES)
  assert steps["easy"] < steps["medium"] < steps["hard"] < steps["extreme"]
