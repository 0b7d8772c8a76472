"""TextCraft-Synth as an environment suite: tfds task splits, the root factory, the expert solvers.

A config's `env` section mirrors `TextCraftConfig`:

    env.name = "textcraft_synth"
    env.world, env.info_style              the environment (`env.make_root_environment`)
    env.dataset                            the tfds builder config of the tasks ("paper", "small", "toy")
    env.max_own_crafts, env.crafts_per_cell, env.transcript_style
                                           the expert solvers' knobs (`solvers.SolverConfig`)

Augmented demonstration copies rename the world's items (`renaming.ItemRenaming`), so that a policy
trained from scratch can only predict an item name by copying it from its context.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from rao_jax.errors import FieldError
from rao_jax.envs.base import DemoNode, DemoTurn, renamed_nodes
from rao_jax.envs.suite import Suite
from rao_jax.envs.textcraft_synth import dataset, solvers
from rao_jax.envs.textcraft_synth.env import INFO_STYLES
from rao_jax.envs.textcraft_synth.renaming import ItemRenaming
from rao_jax.envs.textcraft_synth.tasks import DIFFICULTIES, SPLITS, Task
from rao_jax.envs.textcraft_synth.world import WORLD_PRESETS, get_world


@dataclasses.dataclass(frozen=True)
class TextCraftConfig:
  """The world, its tasks, and how the expert solvers write their turns.

  Attributes:
    world: a `WORLD_PRESETS` name.
    info_style: what `get_info` prints ("full" or "compact"; `env.INFO_STYLES`).
    dataset: the tfds builder config of the tasks (its world must be `world`).
    max_own_crafts: the delegating expert crafts at most this many ingredient kinds itself.
    crafts_per_cell: crafts per expert cell.
    transcript_style: "spec" (thoughts, prints) or "compact" (`solvers.TRANSCRIPT_STYLES`).
  """

  world: str = "small"
  info_style: str = "full"
  dataset: str = "small"
  max_own_crafts: int = 8
  crafts_per_cell: int = 1
  transcript_style: str = "spec"

  def __post_init__(self):
    builders = {c.name: c for c in dataset.BUILDER_CONFIGS}
    checks = (("world", self.world in WORLD_PRESETS, f"is not one of {sorted(WORLD_PRESETS)}"),
              ("info_style", self.info_style in INFO_STYLES, f"is not one of {INFO_STYLES}"),
              ("dataset", self.dataset in builders, f"is not one of {sorted(builders)}"),
              ("transcript_style", self.transcript_style in solvers.TRANSCRIPT_STYLES,
               f"is not one of {solvers.TRANSCRIPT_STYLES}"),
              ("max_own_crafts", self.max_own_crafts > 0, "must be positive"),
              ("crafts_per_cell", self.crafts_per_cell > 0, "must be positive"))
    for field, ok, problem in checks:
      if not ok:
        raise FieldError(field, getattr(self, field), problem)
    if builders[self.dataset].world != WORLD_PRESETS[self.world]:
      raise FieldError("dataset", self.dataset, f"was generated in another world than world={self.world!r}")


class TextCraftSuite(Suite):
  """TextCraft-Synth (`../shared/spec/TEXTCRAFT_SYNTH.md`)."""

  Config = TextCraftConfig
  difficulties = DIFFICULTIES
  splits = SPLITS
  env_name = "textcraft_synth"

  @property
  def env_config(self) -> dict[str, Any]:
    return {"world": self.config.world, "info_style": self.config.info_style}

  def load_tasks(self, split: str, data_dir: str) -> list[Task]:
    return dataset.load_tasks(self.config.dataset, split, data_dir)

  def demonstrations(self, task: Task, *, delegate: bool, max_depth: int, variant: str | None = None
                     ) -> list[DemoNode] | None:
    transcript = self._solve(task, delegate, max_depth)
    if transcript is None:
      return None
    # TextCraft's rules and tool docs are the same at every node: each node's prompt parts are the
    # root's, with the node's own goal.
    root = self.root_environment(task)
    nodes = [DemoNode(goal=node.goal, depth=node.depth, environment=root,
                      turns=tuple(DemoTurn(turn.thought, turn.code, turn.output) for turn in node.turns))
             for node in transcript.nodes()]
    return nodes if variant is None else renamed_nodes(nodes, ItemRenaming(get_world(self.config.world), variant))

  @functools.lru_cache(maxsize=4096)
  def _solve(self, task: Task, delegate: bool, max_depth: int) -> solvers.Transcript | None:
    """The expert's tree for `task` on a fresh inventory, or None if it cannot solve it."""
    config = solvers.SolverConfig(delegate=delegate, max_depth=max_depth, max_own_crafts=self.config.max_own_crafts,
                                  crafts_per_cell=self.config.crafts_per_cell, style=self.config.transcript_style)
    try:
      transcript = solvers.solve(self.root_environment(task), config)
    except solvers.InfeasibleError:
      return None
    return transcript if transcript.success >= 1.0 else None

  def whole_words(self) -> tuple[str, ...]:
    return tuple(get_world(self.config.world).items)
