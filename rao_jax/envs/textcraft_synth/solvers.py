"""Expert solvers: complete agent transcripts for TextCraft-Synth, executed against the real env.

A solver first *plans* a node (a pure function of the world, the node's targets and the part of the
inventory it may use), then *acts* the plan as turns in the agent's format: a thought and one code
cell per turn, run by `TrustedCellRunner` with the node's real tools, so every observation is what
the environment really returned. Two policies:

- flat: one agent looks at the inventory and the recipes, crafts every missing item in tier order,
  and finishes;
- recursive: a node hands craftable ingredients of its targets to children via `launch_subagent`
  (largest recipe tree first, until its own craft calls are at most `max_own_crafts`), then crafts
  the rest and its targets, and finishes. Independent children run in parallel (one
  `asyncio.gather` cell), the others one at a time.

**Independence rule.** Every node of a plan has an *allowance*: the units of pre-existing inventory
its whole subtree may consume (the root's allowance is the inventory). A node nets its needs against
its allowance, claims what it uses for its own crafts, and plans its children against the rest.
Two children are independent iff (a) their recipe trees share no craftable item, and (b) their
claims fit together in what is left. (a) matters because success counts a target's growth since the
fork: a concurrent sibling consuming or making the same item would spoil the count. The children, in
tier order, are grouped greedily into waves of mutually independent children: a wave is one
`asyncio.gather` cell (or one plain `await` if alone), and a later wave is planned against what
earlier waves left, their rounding leftovers included. If no plan with children fits, the node
crafts everything itself. A node never touches items outside its allowance, so its ancestors' and
cousins' materials are safe whatever the interleaving.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
from typing import Any, Iterable, Mapping

from rao_jax.envs.base import DemoTurn
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.trusted_runner import TrustedCellRunner
from rao_jax.envs.textcraft_synth.world import World

Counts = dict[str, int]
TRANSCRIPT_STYLES = ("spec", "compact")
# The finish message of every compact-style node (its result, as its parent sees it).
COMPACT_FINISH_MESSAGE = "done"


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  """How an expert solver plans and how verbose its transcripts are.

  Attributes:
    delegate: recursive solver (True) or flat solver (False).
    max_depth: a node at this depth (root = 0) may not launch children.
    max_own_crafts: a delegating node hands ingredients to children (largest recipe tree first)
      until its own craft calls are at most this; 1 delegates every craftable ingredient.
    crafts_per_cell: craft calls per code cell (1 = one craft per turn).
    use_get_info: look recipes up with get_info (as a real agent must) before crafting.
    info_batch: items per get_info call.
    style: how turns read. "spec": a thought per turn, the inventory viewed first, printed results
      (the paper's agent). "compact": no thoughts, no inventory view, only the recipes of items the
      node crafts itself are looked up and kept in a variable `info`, children launched in one
      `asyncio.gather`, and the last cell crafts and finishes (`finish('done')`); for the toy preset's
      small models and windows (`_compact_turns`).
  """

  delegate: bool = False
  max_depth: int = 6
  max_own_crafts: int = 8
  crafts_per_cell: int = 1
  use_get_info: bool = True
  info_batch: int = 8
  style: str = "spec"

  def __post_init__(self):
    for name in ("max_own_crafts", "crafts_per_cell", "info_batch"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_depth < 0:
      raise ValueError(f"max_depth must be >= 0, got {self.max_depth}")
    if self.style not in TRANSCRIPT_STYLES:
      raise ValueError(f"style must be one of {TRANSCRIPT_STYLES}, got {self.style!r}")
    if self.style == "compact" and not self.use_get_info:
      raise ValueError("the compact style crafts from the recipes it looked up: it needs use_get_info=True")


FLAT = SolverConfig(delegate=False)
RECURSIVE = SolverConfig(delegate=True)


# ------------------------------------------------------------------------------------- planning


class InfeasibleError(ValueError):
  """The allowance cannot pay for the targets."""


@dataclasses.dataclass(frozen=True)
class NodePlan:
  """What one node does: launch its children wave by wave, then make `crafts`.

  Attributes:
    targets: item -> new units this node must make.
    crafts: (item, total units) of the node's own craft calls, in tier order.
    waves: plans of the delegated ingredients; the children of a wave run in parallel (one
      `asyncio.gather` cell), waves run one after the other.
    claims: units of pre-existing inventory the whole subtree consumes.
    leftovers: units the subtree makes beyond what it consumes and delivers (rounding surplus).
  """

  targets: Counts
  crafts: tuple[tuple[str, int], ...]
  waves: tuple[tuple["NodePlan", ...], ...]
  claims: Counts
  leftovers: Counts

  @property
  def children(self) -> tuple["NodePlan", ...]:
    return tuple(child for wave in self.waves for child in wave)

  def num_nodes(self) -> int:
    return 1 + sum(child.num_nodes() for child in self.children)


def _add(into: Counts, counts: Mapping[str, int], sign: int = 1) -> Counts:
  for item, units in counts.items():
    into[item] = into.get(item, 0) + sign * units
    if not into[item]:
      del into[item]
  return into


def _fits(demand: Mapping[str, int], allowance: Mapping[str, int]) -> bool:
  return all(allowance.get(item, 0) >= units for item, units in demand.items())


@functools.lru_cache(maxsize=None)
def _closure(world: World, name: str) -> frozenset[str]:
  recipe = world.item(name).recipe
  result = {name}
  for ingredient, _ in recipe.ingredients if recipe else ():
    result |= _closure(world, ingredient)
  return frozenset(result)


@dataclasses.dataclass
class _Netting:
  """The result of netting a node's needs against its allowance (see `_net`)."""

  crafts: list[tuple[str, int]]  # (item, total units), lowest tier first.
  delegated: Counts  # Delegated item -> units the node's children must deliver.
  claims: Counts  # Units the node's own crafts take from the allowance.
  leftovers: Counts  # Units the node's own crafts make beyond what it uses and delivers.
  remaining: Counts  # What is left of the allowance for the children.


def _net(world: World, targets: Mapping[str, int], allowance: Mapping[str, int],
         delegate: frozenset[str]) -> _Netting:
  """Nets needs against `allowance` in decreasing tier order (ingredients sit at lower tiers).

  Targets must be made anew (only growth counts); every other need is first paid from the
  allowance, then crafted, or left to children if the item is in `delegate`.
  """
  closure = set().union(*(_closure(world, target) for target in targets))
  need: Counts = collections.Counter(targets)
  result = _Netting(crafts=[], delegated={}, claims={}, leftovers={}, remaining=dict(allowance))
  for name in sorted(closure, key=lambda name: (-world.item(name).tier, name)):
    from_stock = max(0, min(result.remaining.get(name, 0), need[name] - targets.get(name, 0)))
    _add(result.claims, {name: from_stock})
    _add(result.remaining, {name: -from_stock})
    missing = need[name] - from_stock
    if missing <= 0:
      continue
    recipe = world.item(name).recipe
    if recipe is None:
      raise InfeasibleError(f"short of {missing} {name}")
    if name in delegate:
      result.delegated[name] = missing
      continue
    num_crafts = -(-missing // recipe.result_count)
    result.crafts.append((name, num_crafts * recipe.result_count))
    _add(result.leftovers, {name: num_crafts * recipe.result_count - missing})
    for ingredient, units in recipe.ingredients:
      need[ingredient] += num_crafts * units
  result.crafts.reverse()
  return result


def plan_node(world: World, targets: Mapping[str, int], allowance: Mapping[str, int], depth: int,
              config: SolverConfig) -> NodePlan:
  """The plan of a node with `targets` that may consume `allowance`; InfeasibleError if none fits.

  A delegating node hands its direct ingredients to children, largest recipe tree first, until
  its own craft calls are at most `config.max_own_crafts`; if no plan with children fits the
  allowance, it crafts everything itself.
  """
  if config.delegate and depth < config.max_depth:
    try:
      delegate = _delegated_set(world, targets, allowance, config)
      return _plan(world, targets, allowance, depth, config, delegate)
    except InfeasibleError:
      pass
  return _plan(world, targets, allowance, depth, config, frozenset())


def _delegated_set(world: World, targets: Mapping[str, int], allowance: Mapping[str, int],
                   config: SolverConfig) -> frozenset[str]:
  candidates = sorted(
      {ingredient for target in targets for ingredient, _ in world.item(target).recipe.ingredients
       if not world.item(ingredient).is_base and ingredient not in targets},
      key=lambda name: (-len(_closure(world, name)), name))
  delegate: frozenset[str] = frozenset()
  for name in candidates:
    if len(_net(world, targets, allowance, delegate).crafts) <= config.max_own_crafts:
      break
    delegate |= {name}
  return delegate


def _plan(world: World, targets: Mapping[str, int], allowance: Mapping[str, int], depth: int,
          config: SolverConfig, delegate: frozenset[str]) -> NodePlan:
  netting = _net(world, targets, allowance, delegate)
  waves = _plan_waves(world, netting.delegated, netting.remaining, depth, config)
  # Claims and leftovers of the subtree: a child's claim paid from an earlier child's leftovers is
  # a transfer inside the subtree, not a claim on the allowance.
  claims, leftovers = netting.claims, netting.leftovers
  pool: Counts = {}
  for wave in waves:
    for child in wave:
      for item, units in child.claims.items():
        from_pool = min(units, pool.get(item, 0))
        _add(pool, {item: -from_pool})
        _add(claims, {item: units - from_pool})
    for child in wave:
      _add(pool, child.leftovers)
  _add(leftovers, pool)
  return NodePlan(targets=dict(targets), crafts=tuple(netting.crafts),
                  waves=tuple(map(tuple, waves)), claims=claims, leftovers=leftovers)


def _crafted_closure(world: World, name: str) -> frozenset[str]:
  return frozenset(item for item in _closure(world, name) if not world.item(item).is_base)


def _plan_waves(world: World, delegated: Mapping[str, int], remaining: Mapping[str, int],
                depth: int, config: SolverConfig) -> list[list[NodePlan]]:
  """Children for `delegated` in tier order, grouped greedily into waves of independent children.

  A child joins the current wave if its recipe tree shares no craftable item with the trees of the
  wave's children and all their claims fit what the wave may use; otherwise the wave closes and the
  next one may use what is left after it, its leftovers included.
  """
  waves: list[list[NodePlan]] = []
  available, wave_claims, wave_items = dict(remaining), {}, frozenset()
  for name in sorted(delegated, key=lambda name: (world.item(name).tier, name)):
    items = _crafted_closure(world, name)
    plan = None
    if waves and not items & wave_items:
      plan = plan_node(world, {name: delegated[name]}, available, depth + 1, config)
      if not _fits(_add(dict(wave_claims), plan.claims), available):
        plan = None
    if plan is None:
      for other in waves[-1] if waves else ():
        _add(_add(available, other.claims, -1), other.leftovers)
      waves.append([])
      wave_claims, wave_items = {}, frozenset()
      plan = plan_node(world, {name: delegated[name]}, available, depth + 1, config)
    waves[-1].append(plan)
    _add(wave_claims, plan.claims)
    wave_items |= items
  return waves


# ---------------------------------------------------------------------------------- transcripts


Turn = DemoTurn  # one assistant turn and what its cell printed (None for the cell that finished)


@dataclasses.dataclass
class Transcript:
  """One node of a solved tree: its prompt, turns, finish message, judged success, and children.

  `launched_by_cell` is the 1-based index of the parent's cell that launched this node (None for
  the root); children are listed in launch order.
  """

  goal: str
  targets: Counts
  depth: int
  delegation: bool
  prompt: dict[str, str]
  turns: list[Turn]
  finish_message: str | None
  success: float
  launched_by_cell: int | None
  children: list["Transcript"]

  def nodes(self) -> Iterable["Transcript"]:
    """This node and its descendants, depth first in launch order."""
    yield self
    for child in self.children:
      yield from child.nodes()

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Transcript":
    fields = dict(d)
    fields["turns"] = [Turn(**turn) for turn in d["turns"]]
    fields["children"] = [cls.from_dict(child) for child in d["children"]]
    return cls(**fields)


def _code_counts(counts: Mapping[str, int]) -> str:
  return "{" + ", ".join(f'"{item}": {units}' for item, units in counts.items()) + "}"


def _craft_line(world: World, item: str, total: int) -> str:
  return f'print(craft({_code_counts(_ingredients(world, item, total))}, ("{item}", {total})))'


def _summary(counts: Mapping[str, int]) -> str:
  return ", ".join(f"{units}x {item}" for item, units in counts.items())


def _chunks(items: list, size: int) -> list[list]:
  return [items[i:i + size] for i in range(0, len(items), size)]


def _info_layers(world: World, plan: NodePlan) -> list[list[str]]:
  """Items to look up, layer by layer from the targets down through the items the node crafts."""
  crafted = {item for item, _ in plan.crafts}
  layers, seen, frontier = [], set(), list(plan.targets)
  while frontier:
    layer = [name for name in dict.fromkeys(frontier) if name not in seen]
    seen.update(layer)
    if layer:
      layers.append(layer)
    frontier = [ingredient for name in layer if name in crafted
                for ingredient, _ in world.item(name).recipe.ingredients
                if not world.item(ingredient).is_base and ingredient not in seen]
  return layers


def _compact_turns(world: World, plan: NodePlan, config: SolverConfig) -> list[tuple[str, str]]:
  """("", code) of every turn of a compact-style node (see `SolverConfig.style`). A delegating node:

      info = get_info(['m3_i4'])                           -> {'m3_i4': {'m1_i2': 1, 'm3_i3': 1}}
      info
      await asyncio.gather(*[launch_subagent({i: n}) for i, n in info['m3_i4'].items()])
      craft(info['m3_i4'], ('m3_i4', 1))
      finish('done')                                       <- in the same cell as the last craft

  The recipes a node looks up are kept in its `info` dict and used from there, as a code-acting agent
  does, so the item names it writes are names it read: the goal, and for a flat node the ingredients
  of the recipes it looked up (`new = get_info([...])`, `info |= new`). A flat node crafts in the
  reverse order of its lookups (deepest layer first), which is a valid order whenever the recipe tree
  repeats no item, instead of by tier labels it cannot see. Launches and crafts that the recipe does not
  spell out (other counts, part of a recipe delegated) name their items and counts in a dict literal.
  """
  crafted = {item for item, _ in plan.crafts}
  layers = [[name for name in layer if name in crafted] for layer in _info_layers(world, plan)]
  turns = []
  for index, names in enumerate(names for layer in layers for names in _chunks(layer, config.info_batch)):
    code = (f"info = get_info({names!r})\ninfo" if index == 0 else
            f"new = get_info({names!r})\ninfo |= new\nnew")
    turns.append(("", code))
  target, total = next(iter(plan.targets.items())) if len(plan.targets) == 1 else (None, 0)
  for wave in plan.waves:
    asks = dict(sorted((item, count) for child in wave for item, count in child.targets.items()))
    source = (f"info[{target!r}]" if target in crafted and asks == _ingredients(world, target, total)
              else repr(asks))
    turns.append(("", f"await asyncio.gather(*[launch_subagent({{i: n}}) for i, n in {source}.items()])"))
  totals = dict(plan.crafts)
  order = list(reversed([name for layer in layers for name in layer]))
  if sorted(order) != sorted(totals) or not _is_topological(world, order):
    order = list(totals)  # a recipe DAG that repeats items: the plan's tier order
  cells = [[_compact_craft(world, item, totals[item]) for item in group]
           for group in _chunks(order, config.crafts_per_cell)] or [[]]
  cells[-1].append(f"finish({COMPACT_FINISH_MESSAGE!r})")
  return turns + [("", "\n".join(cell)) for cell in cells]


def _ingredients(world: World, item: str, total: int) -> dict[str, int]:
  """The ingredients {name: units} of crafting `total` units of `item`."""
  recipe = world.item(item).recipe
  return {name: units * total // recipe.result_count for name, units in recipe.ingredients}


def _is_topological(world: World, order: list[str]) -> bool:
  """Every crafted item of `order` comes after the crafted ingredients of it that `order` holds."""
  position = {item: index for index, item in enumerate(order)}
  return all(position[ingredient] < position[item] for item in order
             for ingredient, _ in world.item(item).recipe.ingredients if ingredient in position)


def _compact_craft(world: World, item: str, total: int) -> str:
  """craft(info[item], ...) for one craft of the looked-up recipe, else the ingredients spelled out."""
  if total == world.item(item).recipe.result_count:
    return f"craft(info[{item!r}], ({item!r}, {total}))"
  return f"craft({_ingredients(world, item, total)!r}, ({item!r}, {total}))"


def _planned_turns(world: World, plan: NodePlan, config: SolverConfig) -> list[tuple[str, str]]:
  """(thought, code) of every turn of a node, the finish turn last."""
  if config.style == "compact":
    return _compact_turns(world, plan, config)
  turns = [("First I check what the inventory holds.", "view_inventory()")]
  if config.use_get_info:
    for layer in _info_layers(world, plan):
      for names in _chunks(layer, config.info_batch):
        listed = ", ".join(f'"{name}"' for name in names)
        turns.append((f"Look up the recipes of {', '.join(names)}.", f"get_info([{listed}])"))
  for wave_index, wave in enumerate(plan.waves):
    asks = [child.targets for child in wave]
    later = " next" if wave_index else ""
    if len(asks) > 1:
      calls = "".join(f"    launch_subagent({_code_counts(ask)}),\n" for ask in asks)
      thought = (f"Delegate {', '.join(_summary(ask) for ask in asks)}{later} to sub-agents; "
                 "they need different materials, so they run in parallel.")
      turns.append((thought, f"results = await asyncio.gather(\n{calls})\nprint(results)"))
    else:
      turns.append((f"Delegate {_summary(asks[0])}{later} to a sub-agent and wait for it.",
                    f"result = await launch_subagent({_code_counts(asks[0])})\nprint(result)"))
  for group in _chunks(list(plan.crafts), config.crafts_per_cell):
    what = ", ".join(f"{total} {item}" for item, total in group)
    thought = f"Craft {what}." if len(group) == 1 else f"Craft {what}, lowest tier first."
    turns.append((thought, "\n".join(_craft_line(world, item, total) for item, total in group)))
  turns.append(("The goal items are crafted, so I finish.",
                f'finish("Crafted {_summary(plan.targets)}.")'))
  return turns


async def _act(node: env_lib.TextCraftNode, plan: NodePlan, depth: int, config: SolverConfig,
               launched_by_cell: int | None) -> Transcript:
  """Runs a node's planned turns on its real tools; children run recursively on forked nodes."""
  delegation = config.delegate and depth < config.max_depth
  transcript = Transcript(
      goal=node.goal, targets=dict(node.targets), depth=depth, delegation=delegation,
      prompt=dataclasses.asdict(node.prompt_parts(delegation)), turns=[], finish_message=None,
      success=0.0, launched_by_cell=launched_by_cell, children=[])
  pending = list(plan.children)
  finished: list[str] = []

  def finish(message):
    finished.append(message)

  async def launch_subagent(targets, context=""):
    child_node = node.fork(targets, context)
    if isinstance(child_node, str):
      return child_node
    child_plan = next(p for p in pending if p.targets == child_node.targets)
    pending.remove(child_plan)
    slot = len(transcript.children)
    transcript.children.append(None)
    child = await _act(child_node, child_plan, depth + 1, config, len(transcript.turns) + 1)
    transcript.children[slot] = child
    return child.finish_message

  namespace = dict(node.tools(), finish=finish, **node.namespace_variables())
  if delegation:
    namespace["launch_subagent"] = launch_subagent
  runner = TrustedCellRunner(namespace)
  for thought, code in _planned_turns(node.world, plan, config):
    output = await runner.run(code)
    transcript.turns.append(Turn(thought=thought, code=code, output=None if finished else output))
    if finished:
      break
    await asyncio.sleep(0)  # Let siblings take turns, as concurrent agents would.
  if finished:
    transcript.finish_message = finished[0]
    transcript.success = node.judge(finished[0])
  return transcript


def solve(root: env_lib.TextCraftNode, config: SolverConfig = FLAT) -> Transcript:
  """Plans and acts a whole tree for `root`; InfeasibleError if its inventory cannot pay."""
  return asyncio.run(solve_async(root, config))


async def solve_async(root: env_lib.TextCraftNode, config: SolverConfig = FLAT) -> Transcript:
  plan = plan_node(root.world, root.targets, root.inventory.as_dict(), 0, config)
  return await _act(root, plan, 0, config, None)
