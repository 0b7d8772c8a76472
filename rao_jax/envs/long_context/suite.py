"""The long-context suite (the Oolong-Real stand-in, `../shared/spec/STANDINS.md`) for the trainer.

A config's `env` section mirrors `LongContextSuiteConfig`:

    env.name = "long_context"
    env.dataset        the tfds builder config of the tasks ("tiny", "paper")
    env.chunk_lines    lines per chunk of the experts (a child reads one chunk; a flat agent its first)
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from rao_jax.errors import FieldError
from rao_jax.envs.base import DemoNode, renamed_nodes
from rao_jax.envs.long_context import dataset, solvers
from rao_jax.envs.long_context.env import ENV_NAME
from rao_jax.envs.long_context.renaming import CastRenaming
from rao_jax.envs.long_context.sessions import CHARACTERS, PLAYERS, ROLL_TYPES, SPELLS
from rao_jax.envs.long_context.tasks import DIFFICULTIES, SPLITS, Task
from rao_jax.envs.suite import Suite


@dataclasses.dataclass(frozen=True)
class LongContextSuiteConfig:
  dataset: str = "tiny"
  chunk_lines: int = 20

  def __post_init__(self):
    names = [config.name for config in dataset.BUILDER_CONFIGS]
    if self.dataset not in names:
      raise FieldError("dataset", self.dataset, f"is not one of {names}")
    if self.chunk_lines <= 0:
      raise FieldError("chunk_lines", self.chunk_lines, "must be positive")


class LongContextSuite(Suite):
  """Long-context aggregation questions over generated game transcripts."""

  Config = LongContextSuiteConfig
  difficulties = DIFFICULTIES
  splits = SPLITS
  env_name = ENV_NAME

  @property
  def env_config(self) -> dict[str, Any]:
    return {"session": dataclasses.asdict(dataset.builder_config(self.config.dataset).session)}

  def load_tasks(self, split: str, data_dir: str) -> list[Task]:
    return dataset.load_tasks(self.config.dataset, split, data_dir)

  def demonstrations(self, task: Task, *, delegate: bool, max_depth: int, variant: str | None = None
                     ) -> list[DemoNode] | None:
    nodes = self.solve(task, delegate and max_depth >= 1).nodes
    if variant is None:
      return nodes
    return renamed_nodes(nodes, CastRenaming(variant))

  @functools.lru_cache(maxsize=1024)
  def solve(self, task: Task, delegate: bool) -> solvers.Solution:
    """The recursive (`delegate`) or flat expert's tree of `task`."""
    config = solvers.SolverConfig(delegate=delegate, chunk_lines=self.config.chunk_lines)
    return solvers.solve(self.root_environment(task), config)

  def whole_words(self) -> tuple[str, ...]:
    return CHARACTERS + PLAYERS + ROLL_TYPES + tuple(SPELLS)
