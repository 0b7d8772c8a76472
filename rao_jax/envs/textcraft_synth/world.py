"""The procedural crafting world of TextCraft-Synth.

Five material domains, each with ten name prefixes. Tier 0 holds the base materials; tiers 1..max_tier
hold craftable items whose single shapeless recipe draws its ingredients from the same domain one or two
tiers below (plus, from tier 4 on, one candidate four tiers below), and twelve cross-domain items at
tiers 10..12 combine one item of each domain they name. Item names carry no meaning, so a model cannot
rely on prior knowledge. Everything follows from `WorldConfig` through one local `random.Random`, so the
same config gives the same world on every machine.

Two recipe rule sets share the names, tiers and domains:
  "paper": the spec's rules (TEXTCRAFT_SYNTH.md): 1-6 ingredients, 1-2 units each, 1-4 units made.
  "toy":   recipes a CPU-sized model can master (docs/textcraft_synth.md): one unit of every ingredient,
           one unit made per craft; a tier-1 item takes one or two base materials, a higher item takes
           one item of the tier below and, with `second_ingredient_probability`, a second one from two
           tiers below (tier 1 for tier 2) whose recipe tree shares no item with the first's. So an
           item's recipe tree is a true tree: no crafted item appears twice in it, and siblings never
           compete for the same crafted item.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import random
import types
from typing import Container, Mapping

DOMAINS = ("metal", "crystal", "organic", "arcane", "tech")
# The letter of each domain in cross-domain item names ("x10_mc" = metal + crystal).
DOMAIN_LETTERS = {"m": "metal", "c": "crystal", "o": "organic", "a": "arcane", "t": "tech"}
CROSS_DOMAIN = "cross"
NUM_PREFIXES = 10
# Cross-domain items by tier; the letters after the tier name the domains, "all" is all five.
CROSS_DOMAIN_ITEMS = {
    10: ("x10_mc", "x10_ot", "x10_am", "x10_ct"),
    11: ("x11_mct", "x11_oam", "x11_act", "x11_tca"),
    12: ("x12_mcat", "x12_oacm", "x12_tcoa", "x12_all"),
}
MAX_DISTINCT_INGREDIENTS = 6
# From this tier on, item names get a `_{tier}` suffix.
TIER_SUFFIX_FROM = 6
# From this tier on, a recipe may also use one item four tiers below.
FAR_CANDIDATE_FROM = 4
RECIPE_RULES = ("paper", "toy")
# Toy rules: candidates tried for a second ingredient whose recipe tree is disjoint from the first's.
_TOY_SECOND_INGREDIENT_TRIES = 8


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Generator settings. `items_per_domain_tier` is K: K base entries and ~K craftables per domain tier.

  `recipe_rules` picks the rule set ("paper" or "toy", module docstring); `second_ingredient_probability`
  is the toy rules' chance that a recipe above tier 1 has a second crafted ingredient (unused by "paper").
  """

  seed: int = 42
  items_per_domain_tier: int = 25
  max_tier: int = 12
  cross_domain: bool = True
  recipe_rules: str = "paper"
  second_ingredient_probability: float = 0.35

  def __post_init__(self):
    if not isinstance(self.seed, int) or isinstance(self.seed, bool):
      raise TypeError(f"seed must be an int, got {self.seed!r}")
    if not isinstance(self.items_per_domain_tier, int) or self.items_per_domain_tier < 1:
      raise ValueError(f"items_per_domain_tier must be a positive int, got {self.items_per_domain_tier!r}")
    if not isinstance(self.max_tier, int) or self.max_tier < 1:
      raise ValueError(f"max_tier must be a positive int, got {self.max_tier!r}")
    if not isinstance(self.cross_domain, bool):
      raise TypeError(f"cross_domain must be a bool, got {self.cross_domain!r}")
    if self.recipe_rules not in RECIPE_RULES:
      raise ValueError(f"recipe_rules must be one of {RECIPE_RULES}, got {self.recipe_rules!r}")
    if self.recipe_rules == "toy" and self.cross_domain:
      raise ValueError("the toy recipe rules have no cross-domain items: set cross_domain=False")
    if not 0.0 <= self.second_ingredient_probability <= 1.0:
      raise ValueError("second_ingredient_probability must be in [0, 1], got "
                       f"{self.second_ingredient_probability!r}")


WORLD_PRESETS: Mapping[str, WorldConfig] = types.MappingProxyType({
    "paper": WorldConfig(),
    "small": WorldConfig(items_per_domain_tier=8),  # A CPU-sized toy with the same tiers.
    # The `tiny` training preset's world: toy recipes, ~70 craftables per tier (>= 30 held-out
    # targets per difficulty with a quarter of the items held out).
    "toy": WorldConfig(items_per_domain_tier=14, cross_domain=False, recipe_rules="toy"),
})


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One shapeless, single-output recipe: a craft consumes `ingredients`, produces `result_count` units."""

  ingredients: tuple[tuple[str, int], ...]  # (item, units per craft), sorted by item name.
  result_count: int

  def ingredient_dict(self) -> dict[str, int]:
    return dict(self.ingredients)


@dataclasses.dataclass(frozen=True)
class Item:
  """An item. `tier` is its tier label (`crafting_depth`), 0 for base materials."""

  name: str
  domain: str  # One of DOMAINS, or CROSS_DOMAIN.
  tier: int
  recipe: Recipe | None  # None for base materials.

  @property
  def is_base(self) -> bool:
    return self.recipe is None


@dataclasses.dataclass(frozen=True, eq=False)
class World:
  """An immutable world: every item by name, in generation order (by tier)."""

  config: WorldConfig
  items: Mapping[str, Item]

  def item(self, name: str) -> Item:
    """The item called `name`; KeyError if the world has none."""
    try:
      return self.items[name]
    except (KeyError, TypeError):
      raise KeyError(f"unknown item {name!r}") from None

  def is_known(self, name: object) -> bool:
    return isinstance(name, str) and name in self.items

  @functools.cached_property
  def base_items(self) -> tuple[str, ...]:
    return tuple(name for name, item in self.items.items() if item.is_base)

  @functools.cached_property
  def _names_by_tier(self) -> Mapping[int, tuple[str, ...]]:
    by_tier: dict[int, list[str]] = {}
    for name, item in self.items.items():
      by_tier.setdefault(item.tier, []).append(name)
    return types.MappingProxyType({tier: tuple(names) for tier, names in by_tier.items()})

  def items_by_tier(self, tier: int) -> tuple[str, ...]:
    """Names of the items with tier label `tier` (empty if none), in generation order."""
    return self._names_by_tier.get(tier, ())

  @property
  def max_tier(self) -> int:
    return max(self._names_by_tier)

  def fingerprint(self) -> str:
    """SHA-256 of a canonical text of every item and recipe: equal iff the worlds are identical."""
    digest = hashlib.sha256()
    for item in self.items.values():
      recipe = "" if item.recipe is None else f"{item.recipe.ingredients!r}->{item.recipe.result_count}"
      digest.update(f"{item.name}|{item.domain}|{item.tier}|{recipe}\n".encode())
    return digest.hexdigest()


def domain_prefixes(domain: str) -> tuple[str, ...]:
  """The ten name prefixes of `domain`: "m0".."m9" for metal, and so on."""
  return tuple(f"{domain[0]}{i}" for i in range(NUM_PREFIXES))


def base_item_name(domain: str, prefix: str) -> str:
  return f"{prefix}_ore" if domain in ("metal", "crystal") else f"raw_{prefix}"


def craftables_per_domain(config: WorldConfig, tier: int) -> int:
  """Craftable items of one domain at `tier` >= 1: max(1, K - tier // 3)."""
  return max(1, config.items_per_domain_tier - tier // 3)


def base_ingredient_count(tier: int) -> int:
  """The minimum number of distinct ingredients of a tier-`tier` recipe."""
  if tier == 1:
    return 1
  if tier <= 7:
    return 2
  if tier <= 11:
    return 3
  return 4


def _result_count(rng: random.Random, tier: int) -> int:
  if tier == 1:
    return rng.randint(2, 4)
  if tier == 2:
    return rng.randint(2, 3)
  if tier <= 5:
    return rng.randint(1, 2)
  return 1


def _weighted_sample_distinct(
    rng: random.Random, candidates: list[tuple[str, float]], k: int) -> list[str]:
  """Draws `k` distinct names without replacement, each draw proportional to the remaining weights.

  A name may appear in several candidate entries (the repeated base materials); every entry of a drawn
  name is removed, so a repeated name is more likely to be drawn but is drawn at most once.
  """
  remaining = list(candidates)
  chosen: list[str] = []
  while len(chosen) < k and remaining:
    total = math.fsum(weight for _, weight in remaining)
    threshold = rng.random() * total
    cumulative = 0.0
    picked = remaining[-1][0]
    for name, weight in remaining:
      cumulative += weight
      if threshold < cumulative:
        picked = name
        break
    chosen.append(picked)
    remaining = [(name, weight) for name, weight in remaining if name != picked]
  return chosen


def _unique_name(stem: str, index: int, taken: Container[str]) -> str:
  name = stem if stem not in taken else f"{stem}_{index}"
  while name in taken:  # Never happens with the spec's names; kept so names are unique by construction.
    name = f"{name}_{index}"
  return name


def _domain_recipe(rng: random.Random, tier: int, entries_by_tier: list[list[str]]) -> Recipe:
  """A tier-`tier` recipe from the domain's entry lists (`entries_by_tier[t]`, base entries repeated)."""
  candidates = [
      (name, 1.0 / (distance + 1))
      for distance in (1, 2) if tier - distance >= 0
      for name in entries_by_tier[tier - distance]
  ]
  if tier >= FAR_CANDIDATE_FROM:  # The spec's far range [t - 4, t - 3) holds the one tier t - 4.
    far_distance = 4
    candidates.append((rng.choice(entries_by_tier[tier - far_distance]), 1.0 / (far_distance + 1)))
  num_distinct = len({name for name, _ in candidates})
  num_ingredients = base_ingredient_count(tier) + rng.randint(0, min(2, tier // 3))
  num_ingredients = min(num_ingredients, MAX_DISTINCT_INGREDIENTS, num_distinct)
  names = _weighted_sample_distinct(rng, candidates, num_ingredients)
  ingredients = tuple(sorted((name, rng.randint(1, 2) if tier <= 4 else 1) for name in names))
  return Recipe(ingredients=ingredients, result_count=_result_count(rng, tier))


def _cross_domain_recipe(
    rng: random.Random, name: str, tier: int, entries: Mapping[str, list[list[str]]]) -> Recipe:
  """One item per named domain from the lowest non-empty tier in [tier - 3, tier - 1]; output 1."""
  letters = name.split("_", 1)[1]
  domains = DOMAINS if letters == "all" else tuple(DOMAIN_LETTERS[letter] for letter in letters)
  picks = []
  for domain in domains:
    source_tier = next(t for t in range(tier - 3, tier) if entries[domain][t])
    picks.append((rng.choice(entries[domain][source_tier]), rng.randint(1, 2)))
  return Recipe(ingredients=tuple(sorted(picks)), result_count=1)


def _toy_recipe(rng: random.Random, tier: int, entries_by_tier: list[list[str]],
                closures: Mapping[str, frozenset[str]], second_probability: float) -> Recipe:
  """A toy-rules recipe (module docstring): 1-2 bases at tier 1, else 1-2 crafted items, 1 unit each."""
  if tier == 1:
    names = rng.sample(sorted(set(entries_by_tier[0])), rng.randint(1, 2))
  else:
    first = rng.choice(entries_by_tier[tier - 1])
    names = [first]
    if rng.random() < second_probability:
      pool = [name for name in entries_by_tier[max(1, tier - 2)] if name != first]
      for candidate in rng.sample(pool, min(_TOY_SECOND_INGREDIENT_TRIES, len(pool))):
        if not closures[candidate] & closures[first]:
          names.append(candidate)
          break
  return Recipe(ingredients=tuple(sorted((name, 1) for name in names)), result_count=1)


def generate_world(config: WorldConfig) -> World:
  """Generates the world of `config` deterministically (a local `random.Random(config.seed)`)."""
  rng = random.Random(config.seed)
  k = config.items_per_domain_tier
  items: dict[str, Item] = {}
  # Per domain, per tier: the entry list recipes sample from (tier 0 keeps its repeated base names).
  entries: dict[str, list[list[str]]] = {domain: [] for domain in DOMAINS}

  for domain in DOMAINS:
    prefixes = domain_prefixes(domain)
    base_entries = [base_item_name(domain, prefixes[i % NUM_PREFIXES]) for i in range(k)]
    entries[domain].append(base_entries)
    for name in base_entries:
      items.setdefault(name, Item(name=name, domain=domain, tier=0, recipe=None))

  closures: dict[str, frozenset[str]] = {}  # toy rules: crafted item -> the crafted items of its tree
  for tier in range(1, config.max_tier + 1):
    for domain in DOMAINS:
      prefixes = domain_prefixes(domain)
      tier_entries = []
      for index in range(craftables_per_domain(config, tier)):
        stem = f"{rng.choice(prefixes)}_i{tier}" + (f"_{tier}" if tier >= TIER_SUFFIX_FROM else "")
        name = _unique_name(stem, index, items.keys())
        if config.recipe_rules == "toy":
          recipe = _toy_recipe(rng, tier, entries[domain], closures, config.second_ingredient_probability)
          closures[name] = frozenset({name}).union(
              *(closures[i] for i, _ in recipe.ingredients if i in closures))
        else:
          recipe = _domain_recipe(rng, tier, entries[domain])
        items[name] = Item(name=name, domain=domain, tier=tier, recipe=recipe)
        tier_entries.append(name)
      entries[domain].append(tier_entries)
    if config.cross_domain:
      for name in CROSS_DOMAIN_ITEMS.get(tier, ()):
        recipe = _cross_domain_recipe(rng, name, tier, entries)
        items[name] = Item(name=name, domain=CROSS_DOMAIN, tier=tier, recipe=recipe)
  return World(config=config, items=types.MappingProxyType(items))


def world_config_from(preset_or_config: str | WorldConfig | Mapping) -> WorldConfig:
  """A `WorldConfig` from a preset name, a config, or a mapping of its fields (unknown keys are errors)."""
  if isinstance(preset_or_config, WorldConfig):
    return preset_or_config
  if isinstance(preset_or_config, str):
    if preset_or_config not in WORLD_PRESETS:
      raise KeyError(f"unknown world preset {preset_or_config!r}; known: {sorted(WORLD_PRESETS)}")
    return WORLD_PRESETS[preset_or_config]
  if isinstance(preset_or_config, Mapping):
    fields = {field.name for field in dataclasses.fields(WorldConfig)}
    unknown = sorted(set(preset_or_config) - fields)
    if unknown:
      raise ValueError(f"unknown WorldConfig fields {unknown}; known: {sorted(fields)}")
    return WorldConfig(**preset_or_config)
  raise TypeError(f"expected a preset name, WorldConfig or mapping, got {type(preset_or_config).__name__}")


@functools.lru_cache(maxsize=16)
def _cached_world(config: WorldConfig) -> World:
  return generate_world(config)


def get_world(preset_or_config: str | WorldConfig | Mapping) -> World:
  """The (cached) world of a preset name ("paper", "small"), a `WorldConfig`, or a mapping of its fields."""
  return _cached_world(world_config_from(preset_or_config))
