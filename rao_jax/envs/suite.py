"""The contract between a benchmark and the trainer: an environment suite.

A suite bundles everything the generic RAO trainer (`rao_jax.train`) needs from one benchmark:

    difficulties, splits       the task tiers (evaluation reports one score per tier) and split names
    load_tasks(split, dir)     the tasks of a split, in a fixed order (generated from a seed)
    env_name, env_config       the registered root factory and its JSON-like config: the interpreter
                               pool builds every tree's root environment from them
    root_environment(task)     the same root, built in this process (prompts, demonstrations)
    demonstrations(...)        expert trees for the warm start, flat or delegating
    whole_words()              names worth one token each in a trained tokenizer (TextCraft's items)

`train/` and `experiments/` know benchmarks only through this class and `rao_jax.envs.registry`; a new
benchmark is one module with a `Suite` subclass (and its frozen `Config` dataclass, which a config
file's `env` section mirrors field for field) plus one config file. `rao_jax.envs.diagnostics` is the
smallest complete example.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from rao_jax.envs import registry
from rao_jax.envs.base import DemoNode, NodeEnvironment


class Task(Protocol):
  """What the trainer needs of a task: its difficulty tier and its JSON-like form for the interpreter pool."""

  difficulty: str

  def to_dict(self) -> dict[str, Any]:
    ...


class Suite(abc.ABC):
  """One benchmark (see the module docstring). Subclasses set `Config` and the class attributes."""

  Config: ClassVar[type]                 # a frozen dataclass: the suite's settings
  difficulties: ClassVar[tuple[str, ...]]
  splits: ClassVar[tuple[str, ...]]
  env_name: ClassVar[str]                # the root factory's name in `registry`

  def __init__(self, config: Any):
    if not isinstance(config, self.Config):
      raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
    self.config = config

  @property
  def env_config(self) -> dict[str, Any]:
    """The root factory's config (JSON-like): by default the suite config's fields."""
    return dataclasses.asdict(self.config)

  @abc.abstractmethod
  def load_tasks(self, split: str, data_dir: str) -> list[Task]:
    """The tasks of `split` in split order (built under `data_dir` on first use)."""

  def root_environment(self, task: Task) -> NodeEnvironment:
    """The root node's environment of `task`, (the interpreter pool builds its own copy)."""
    return registry.make_root_environment(self.env_name, self.env_config, task.to_dict())

  def demonstrations(self, task: Task, *, delegate: bool, max_depth: int, variant: str | None = None
                     ) -> list[DemoNode] | None:
    """An expert tree solving `task` (nodes depth first, root first), or None if the expert cannot.

    `delegate` picks the delegating expert (no node at `max_depth` launches) over the flat one. A
    `variant` seed asks for an augmented copy of the same tree (TextCraft renames the world's items),
    so that names can only be predicted by reading them. Suites without demonstrations return None
    (a warm start then has nothing to imitate).
    """
    del task, delegate, max_depth, variant
    return None

  def whole_words(self) -> tuple[str, ...]:
    """Strings a trained tokenizer should keep as single pieces (none by default)."""
    return ()


def check_difficulties(suite: type[Suite] | Suite, difficulties: Sequence[str], field: str) -> tuple[str, ...]:
  """`difficulties` as a tuple; ValueError naming `field` unless a non-empty subset of the suite's."""
  difficulties = tuple(difficulties) if isinstance(difficulties, (list, tuple)) else (difficulties,)
  unknown = [d for d in difficulties if d not in suite.difficulties]
  if not difficulties or unknown:
    raise ValueError(f"{field}={difficulties!r} must be a non-empty subset of {suite.difficulties}")
  return difficulties
