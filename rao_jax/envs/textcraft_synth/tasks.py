"""Crafting tasks of TextCraft-Synth: requirements, gold plans, and the seeded train/val splits.

A task asks for target items from an inventory of base materials. Its difficulty is the target's tier
label (easy 2-3, medium 4-6, hard 7-9, extreme 10-12). Splits are item-level: per tier a seeded shuffle
puts the last `holdout_fraction` of the items into the val-only target pool, so train and val share no
target. Every task carries a gold plan, simulated against its inventory, that proves it solvable.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import random
import types
from typing import Any, Iterable, Mapping

from rao_jax.envs.textcraft_synth.world import Recipe, World

DIFFICULTY_TIERS: Mapping[str, tuple[int, ...]] = types.MappingProxyType({
    "easy": (2, 3), "medium": (4, 5, 6), "hard": (7, 8, 9), "extreme": (10, 11, 12)})
DIFFICULTIES = tuple(DIFFICULTY_TIERS)
# Inclusive range of a target's count, by difficulty.
TARGET_COUNT_RANGE: Mapping[str, tuple[int, int]] = types.MappingProxyType({
    "easy": (1, 3), "medium": (1, 3), "hard": (1, 2), "extreme": (1, 2)})
SPLITS = ("train", "val")
GOAL_PREFIX = "Craft the following items: "

Plan = tuple[tuple[str, int], ...]  # (item, number of crafts), in tier order.


class UnsolvableTaskError(ValueError):
  """The inventory cannot pay for a plan."""


def difficulty_of_tier(tier: int) -> str:
  """The difficulty whose tiers include `tier`; ValueError for tiers no difficulty covers (0, 1)."""
  for difficulty, tiers in DIFFICULTY_TIERS.items():
    if tier in tiers:
      return difficulty
  raise ValueError(f"no difficulty covers tier {tier}; tiers by difficulty: {dict(DIFFICULTY_TIERS)}")


def format_goal(targets: Mapping[str, int]) -> str:
  """The goal sentence of a node: "Craft the following items: 2x m0_i5, 1x c3_i2"."""
  return GOAL_PREFIX + ", ".join(f"{count}x {item}" for item, count in targets.items())


def _check_targets(world: World, targets: Mapping[str, int]) -> None:
  if not targets:
    raise ValueError("targets must name at least one item")
  for item, count in targets.items():
    if not world.is_known(item):
      raise KeyError(f"unknown target item {item!r}")
    if world.item(item).is_base:
      raise ValueError(f"target {item!r} is a base material; targets must be craftable")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
      raise ValueError(f"target count of {item!r} must be a positive int, got {count!r}")


def _expand(world: World, targets: Mapping[str, int], *, over_provision: bool) -> dict[str, int]:
  """Units needed of every item in the targets' recipe trees (targets included).

  Items are expanded in decreasing tier order, which is topological because every ingredient sits at a
  lower tier than its product. A craftable item needing n units is crafted n times when
  `over_provision` (the original's expansion, which ignores `result_count`), else ceil(n / result_count)
  times; each craft consumes its ingredients' units.
  """
  _check_targets(world, targets)
  if len(targets) == 1:
    order = _expansion_order(world, next(iter(targets)))
  else:
    merged = {step for target in targets for step in _expansion_order(world, target)}
    order = sorted(merged, key=lambda step: (-world.items[step[0]].tier, step[0]))
  need = dict.fromkeys((name for name, _ in order), 0)
  need.update(targets)
  for name, recipe in order:  # Ingredients come after their products in `order`.
    if recipe is None:
      continue
    crafts = need[name] if over_provision else -(-need[name] // recipe.result_count)
    for ingredient, units in recipe.ingredients:
      need[ingredient] += crafts * units
  return need


@functools.lru_cache(maxsize=1 << 16)
def _expansion_order(world: World, name: str) -> tuple[tuple[str, Recipe | None], ...]:
  """`name` and every item of its recipe tree with its recipe, by decreasing (tier, name).

  Cached per (world, item); worlds hash by identity and are themselves cached by `get_world`.
  """
  closure: dict[str, Recipe | None] = {}
  stack = [name]
  while stack:
    item = world.item(stack.pop())
    if item.name not in closure:
      closure[item.name] = item.recipe
      if item.recipe is not None:
        stack.extend(ingredient for ingredient, _ in item.recipe.ingredients)
  return tuple(sorted(closure.items(), key=lambda step: (-world.items[step[0]].tier, step[0])))


def base_requirements(
    world: World, targets: Mapping[str, int], *, over_provision: bool = True) -> dict[str, int]:
  """Base units needed to craft `targets`, by base item name (sorted).

  With `over_provision` (the spec's inventory rule) result counts are ignored, so every intermediate unit
  is paid for as if each craft made one unit: 3-10x what the gold plan consumes. Without it, the exact
  consumption of the gold plan.
  """
  need = _expand(world, targets, over_provision=over_provision)
  return {name: need[name] for name in sorted(need) if world.items[name].recipe is None}


def craft_counts(world: World, targets: Mapping[str, int]) -> dict[str, int]:
  """Crafts of every craftable item of the gold plan: ceil(units needed / result_count)."""
  need = _expand(world, targets, over_provision=False)
  recipes = {name: world.items[name].recipe for name in need}
  return {name: -(-units // recipes[name].result_count) for name, units in need.items() if recipes[name]}


def simulate_plan(world: World, plan: Iterable[tuple[str, int]], inventory: Mapping[str, int]) -> dict[str, int]:
  """The inventory after executing `plan` step by step; UnsolvableTaskError at the first shortfall."""
  held = dict(inventory)
  for name, crafts in plan:
    recipe = world.item(name).recipe
    if recipe is None:
      raise ValueError(f"plan step {name!r} is a base material and cannot be crafted")
    for ingredient, units in recipe.ingredients:
      available = held.get(ingredient, 0)
      if available < crafts * units:
        raise UnsolvableTaskError(
            f"crafting {crafts}x {name} needs {crafts * units} {ingredient}, the inventory holds {available}")
      held[ingredient] = available - crafts * units
    held[name] = held.get(name, 0) + crafts * recipe.result_count
  return held


def gold_plan(world: World, targets: Mapping[str, int], inventory: Mapping[str, int]) -> Plan:
  """The gold plan for `targets`: every needed craft, in (tier, name) order, checked against `inventory`.

  Raises UnsolvableTaskError if simulating the plan runs out of an ingredient or falls short of a target.
  """
  counts = craft_counts(world, targets)  # By decreasing (tier, name).
  plan = tuple(reversed(counts.items()))
  final = simulate_plan(world, plan, inventory)
  for item, count in targets.items():
    if final.get(item, 0) - inventory.get(item, 0) < count:
      raise UnsolvableTaskError(f"the plan makes {final.get(item, 0)} of {item!r}, {count} required")
  return plan


@dataclasses.dataclass(frozen=True)
class Task:
  """One crafting task: what to craft, from what, and a plan that proves it can be done."""

  targets: Mapping[str, int]  # Item -> count; one item unless the multi-target option is on.
  inventory: Mapping[str, int]  # Initial inventory: base materials only.
  difficulty: str
  tier: int  # Tier label of the hardest target.
  gold_plan: Plan  # (item, number of crafts) in tier order.

  def __post_init__(self):
    object.__setattr__(self, "targets", types.MappingProxyType(dict(self.targets)))
    object.__setattr__(self, "inventory", types.MappingProxyType(dict(self.inventory)))
    object.__setattr__(self, "gold_plan", tuple((str(n), int(c)) for n, c in self.gold_plan))
    if self.difficulty not in DIFFICULTY_TIERS:
      raise ValueError(f"unknown difficulty {self.difficulty!r}; known: {DIFFICULTIES}")
    if not self.targets:
      raise ValueError("a task needs at least one target")

  def __hash__(self) -> int:
    return hash((frozenset(self.targets.items()), frozenset(self.inventory.items()), self.difficulty,
                 self.tier, self.gold_plan))

  @property
  def num_gold_crafts(self) -> int:
    """Crafts the gold plan performs (each craft consumes one recipe's worth of ingredients)."""
    return sum(crafts for _, crafts in self.gold_plan)

  def goal_text(self) -> str:
    return format_goal(self.targets)

  def to_dict(self) -> dict[str, Any]:
    """JSON-like form (what an environment receives)."""
    return {
        "targets": dict(self.targets),
        "inventory": dict(self.inventory),
        "difficulty": self.difficulty,
        "tier": self.tier,
        "gold_plan": [[name, crafts] for name, crafts in self.gold_plan],
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Task":
    expected = {"targets", "inventory", "difficulty", "tier", "gold_plan"}
    if not isinstance(d, Mapping) or set(d) != expected:
      keys = sorted(d) if isinstance(d, Mapping) else type(d).__name__
      raise ValueError(f"a task dict has exactly the keys {sorted(expected)}, got {keys}")
    for key in ("targets", "inventory"):
      counts = d[key]
      if not isinstance(counts, Mapping) or not all(
          isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in counts.items()):
        raise ValueError(f"task {key!r} must map item names to int counts, got {counts!r}")
    plan = d["gold_plan"]
    if not isinstance(plan, (list, tuple)) or not all(
        isinstance(step, (list, tuple)) and len(step) == 2 for step in plan):
      raise ValueError(f"task 'gold_plan' must be a list of [item, crafts] pairs, got {d['gold_plan']!r}")
    return cls(targets=d["targets"], inventory=d["inventory"], difficulty=d["difficulty"],
               tier=int(d["tier"]), gold_plan=tuple((name, crafts) for name, crafts in d["gold_plan"]))


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Task sampling settings; the defaults are the paper's.

  Attributes:
    seed: seeds the item hold-out and each split's task sampler.
    num_train, num_val: requested tasks per split; `mix` splits them over DIFFICULTIES.
    holdout_fraction: per tier, the fraction of items that are val-only targets.
    max_attempts_factor: a difficulty's sampler stops after this many times its quota in attempts;
      duplicates (same targets and counts) are rejected, so small item pools run out first.
    exact_inventory: give exactly the bases the gold plan consumes instead of the over-provisioned
      requirement plus a per-base buffer.
    multi_target: tasks with 2..max_targets distinct targets of the same difficulty.
    distractor_bases, distractor_units: inclusive ranges of unneeded base items added and their units.
    target_counts: inclusive range of every target's count, replacing the spec's per-difficulty
      TARGET_COUNT_RANGE when set ((1, 1) for the toy preset: no craft counts to compute).
  """

  seed: int = 42
  num_train: int = 10_000
  num_val: int = 1_000
  mix: tuple[float, ...] = (0.25, 0.35, 0.25, 0.15)
  holdout_fraction: float = 0.2
  max_attempts_factor: int = 30
  exact_inventory: bool = False
  multi_target: bool = False
  max_targets: int = 3
  distractor_bases: tuple[int, int] = (1, 3)
  distractor_units: tuple[int, int] = (1, 5)
  target_counts: tuple[int, int] | None = None

  def __post_init__(self):
    if len(self.mix) != len(DIFFICULTIES) or any(p < 0 for p in self.mix) or not math.isclose(sum(self.mix), 1):
      raise ValueError(f"mix must be {len(DIFFICULTIES)} non-negative fractions summing to 1, got {self.mix}")
    if self.num_train < 0 or self.num_val < 0:
      raise ValueError(f"task counts must be >= 0, got train={self.num_train} val={self.num_val}")
    if not 0 < self.holdout_fraction < 1:
      raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
    if self.max_attempts_factor < 1:
      raise ValueError(f"max_attempts_factor must be >= 1, got {self.max_attempts_factor}")
    if self.multi_target and self.max_targets < 2:
      raise ValueError(f"multi_target needs max_targets >= 2, got {self.max_targets}")
    for name in ("distractor_bases", "distractor_units"):
      low, high = getattr(self, name)
      if not 0 <= low <= high:
        raise ValueError(f"{name} must be an inclusive range 0 <= low <= high, got {(low, high)}")
    if self.target_counts is not None and not 1 <= self.target_counts[0] <= self.target_counts[1]:
      raise ValueError(f"target_counts must be an inclusive range 1 <= low <= high, got {self.target_counts}")

  def count_range(self, difficulty: str) -> tuple[int, int]:
    """Inclusive range of a target's count for tasks of `difficulty`."""
    return self.target_counts or TARGET_COUNT_RANGE[difficulty]


def split_target_items(world: World, seed: int, holdout_fraction: float) -> dict[str, tuple[str, ...]]:
  """Target items of each split: per tier, a seeded shuffle; the last `holdout_fraction` go to val."""
  rng = random.Random(f"textcraft-synth/holdout/{seed}")
  pools: dict[str, list[str]] = {split: [] for split in SPLITS}
  for tier in range(1, world.max_tier + 1):
    names = list(world.items_by_tier(tier))
    rng.shuffle(names)
    num_train = math.floor(len(names) * (1 - holdout_fraction) + 1e-9)
    pools["train"].extend(names[:num_train])
    pools["val"].extend(names[num_train:])
  return {split: tuple(names) for split, names in pools.items()}


def sample_inventory(
    world: World, rng: random.Random, targets: Mapping[str, int], config: TaskConfig) -> dict[str, int]:
  """An initial inventory for `targets`: required bases (+ buffer unless exact) + distractor bases."""
  if config.exact_inventory:
    inventory = base_requirements(world, targets, over_provision=False)
  else:
    need = base_requirements(world, targets, over_provision=True)
    inventory = {name: units + rng.randint(0, max(1, units // 2)) for name, units in need.items()}
  unused = [name for name in world.base_items if name not in inventory]
  num_distractors = min(len(unused), rng.randint(*config.distractor_bases))
  for name in rng.sample(unused, num_distractors):
    inventory[name] = rng.randint(*config.distractor_units)
  return dict(sorted(inventory.items()))


def _sample_difficulty(
    world: World, rng: random.Random, pool: tuple[str, ...], difficulty: str, quota: int,
    config: TaskConfig) -> list[Task]:
  """Up to `quota` distinct tasks with targets from `pool`, within `max_attempts_factor * quota` draws."""
  low, high = config.count_range(difficulty)
  num_counts = high - low + 1
  num_targets = (2, config.max_targets) if config.multi_target else (1, 1)
  if len(pool) < num_targets[0]:
    return []
  # Single-target tasks have exactly len(pool) * num_counts distinct keys; stop once all are drawn.
  max_distinct = math.inf if config.multi_target else len(pool) * num_counts
  seen: set[tuple[tuple[str, int], ...]] = set()
  tasks: list[Task] = []
  for _ in range(config.max_attempts_factor * quota):
    if len(tasks) == quota or len(seen) == max_distinct:
      break
    k = rng.randint(num_targets[0], min(num_targets[1], len(pool)))
    items = rng.sample(pool, k) if config.multi_target else [rng.choice(pool)]
    targets = {item: rng.randint(low, high) for item in sorted(items)}
    key = tuple(targets.items())
    if key in seen:
      continue
    seen.add(key)
    inventory = sample_inventory(world, rng, targets, config)
    tasks.append(Task(targets=targets, inventory=inventory, difficulty=difficulty,
                      tier=max(world.item(item).tier for item in targets),
                      gold_plan=gold_plan(world, targets, inventory)))
  return tasks


def build_splits(world: World, config: TaskConfig = TaskConfig()) -> dict[str, list[Task]]:
  """The train and val tasks of `world`, deterministic in `config.seed`; each split is shuffled."""
  target_items = split_target_items(world, config.seed, config.holdout_fraction)
  splits: dict[str, list[Task]] = {}
  for split, num_tasks in (("train", config.num_train), ("val", config.num_val)):
    rng = random.Random(f"textcraft-synth/tasks/{split}/{config.seed}")
    tasks: list[Task] = []
    for difficulty, fraction in zip(DIFFICULTIES, config.mix):
      tiers = DIFFICULTY_TIERS[difficulty]
      pool = tuple(name for name in target_items[split] if world.item(name).tier in tiers)
      tasks.extend(_sample_difficulty(world, rng, pool, difficulty, round(num_tasks * fraction), config))
    rng.shuffle(tasks)
    splits[split] = tasks
  return splits
