"""Statistics of a TextCraft-Synth setting: the world's shape and its task splits, as JSON.

    python -m rao_jax.envs.textcraft_synth.stats --config paper
    python -m rao_jax.envs.textcraft_synth.stats --config small --exact_inventory
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import statistics
from typing import Any, Mapping, Sequence

import argparse

from rao_jax.envs.textcraft_synth.tasks import (
    DIFFICULTIES, Task, TaskConfig, base_requirements, build_splits)
from rao_jax.envs.textcraft_synth.world import WORLD_PRESETS, World, get_world


def longest_chain(world: World, name: str) -> int:
  """Crafts on the longest path from base materials to `name` (0 for a base; at most its tier label)."""
  return _longest_chains(world)[name]


@functools.lru_cache(maxsize=4)
def _longest_chains(world: World) -> Mapping[str, int]:
  chains: dict[str, int] = {}
  for name, item in world.items.items():  # Generation order is tier order: ingredients come first.
    recipe = item.recipe
    chains[name] = 0 if recipe is None else 1 + max(chains[ingredient] for ingredient, _ in recipe.ingredients)
  return chains


def _mean(values: Sequence[float], digits: int = 2) -> float | None:
  return round(statistics.fmean(values), digits) if values else None


def world_stats(world: World) -> dict[str, Any]:
  """Item counts per tier, recipe shape histograms, and how often the tier label overstates the depth."""
  recipes = {name: item.recipe for name, item in world.items.items() if item.recipe is not None}
  tiers = range(1, world.max_tier + 1)
  shorter = {
      tier: sum(longest_chain(world, name) < tier for name in world.items_by_tier(tier)) for tier in tiers}
  return {
      "config": dataclasses.asdict(world.config),
      "fingerprint": world.fingerprint()[:16],
      "num_items": len(world.items),
      "num_base_items": len(world.base_items),
      "num_recipes": len(recipes),
      "num_cross_domain_items": sum(item.domain == "cross" for item in world.items.values()),
      "craftable_items_per_tier": {tier: len(world.items_by_tier(tier)) for tier in tiers},
      "recipe_fan_in_histogram": dict(sorted(collections.Counter(
          len(recipe.ingredients) for recipe in recipes.values()).items())),
      "mean_fan_in_per_tier": {
          tier: _mean([len(recipes[name].ingredients) for name in world.items_by_tier(tier)]) for tier in tiers},
      "result_count_histogram": dict(sorted(collections.Counter(
          recipe.result_count for recipe in recipes.values()).items())),
      "percent_items_with_shorter_true_chain_per_tier": {
          tier: round(100 * shorter[tier] / len(world.items_by_tier(tier)), 1) for tier in tiers},
  }


def _difficulty_means(tasks: Sequence[Task], value) -> dict[str, float | None]:
  return {d: _mean([value(task) for task in tasks if task.difficulty == d]) for d in DIFFICULTIES}


def task_stats(world: World, splits: Mapping[str, Sequence[Task]]) -> dict[str, Any]:
  """Tasks per split and difficulty, split overlap, gold plan sizes and inventory over-provisioning.

  Over-provisioning is measured against the bases the gold plan consumes: "requirement" is the spec's
  expansion that ignores result counts, "inventory" what the task's inventory actually holds of them.
  """
  def exact(task: Task) -> dict[str, int]:
    return base_requirements(world, task.targets, over_provision=False)

  def requirement_ratio(task: Task) -> float:
    return sum(base_requirements(world, task.targets).values()) / sum(exact(task).values())

  def inventory_ratio(task: Task) -> float:
    consumed = exact(task)
    return sum(task.inventory[name] for name in consumed) / sum(consumed.values())

  def by_split(value) -> dict[str, dict[str, float | None]]:
    return {split: _difficulty_means(tasks, value) for split, tasks in splits.items()}

  targets = {split: {item for task in tasks for item in task.targets} for split, tasks in splits.items()}
  return {
      "tasks_per_split": {split: len(tasks) for split, tasks in splits.items()},
      "tasks_per_split_and_difficulty": {
          split: {d: sum(task.difficulty == d for task in tasks) for d in DIFFICULTIES}
          for split, tasks in splits.items()},
      "target_items_per_split": {split: len(items) for split, items in targets.items()},
      "target_items_in_both_splits": len(targets["train"] & targets["val"]),
      "mean_gold_plan_steps": by_split(lambda task: len(task.gold_plan)),
      "mean_gold_crafts": by_split(lambda task: task.num_gold_crafts),
      "mean_requirement_over_provisioning": by_split(requirement_ratio),
      "mean_inventory_over_provisioning": by_split(inventory_ratio),
  }


def summary(config_name: str, task_config: TaskConfig = TaskConfig()) -> dict[str, Any]:
  """World and task statistics of the world preset `config_name` with tasks sampled by `task_config`."""
  world = get_world(config_name)
  return {"config": config_name, "world": world_stats(world),
          "task_config": dataclasses.asdict(task_config),
          "tasks": task_stats(world, build_splits(world, task_config))}


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m rao_jax.envs.textcraft_synth.stats --config paper [--exact_inventory] [--multi_target]`.

  argparse rather than absl flags: this module is imported by tests and other entry points, and
  module-level absl flags would clash with theirs.
  """
  parser = argparse.ArgumentParser(description="TextCraft-Synth world and split statistics (JSON).")
  parser.add_argument("--config", default="paper", choices=sorted(WORLD_PRESETS), help="world preset")
  parser.add_argument("--exact_inventory", action="store_true", help="exact inventories (no over-provisioning)")
  parser.add_argument("--multi_target", action="store_true", help="multi-target tasks")
  args = parser.parse_args(argv)
  task_config = TaskConfig(exact_inventory=args.exact_inventory, multi_target=args.multi_target)
  print(json.dumps(summary(args.config, task_config), indent=2))


if __name__ == "__main__":
  main()
