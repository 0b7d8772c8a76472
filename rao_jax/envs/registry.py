"""Environments and environment suites by name.

Root factories (`make_root_environment`) are looked up by the interpreter pool (in the trainer's process),
suites (`get_suite_class`) by the trainer. Built-in entries are imported lazily from "module:attribute", so a
process loads only what it uses; `register` and `register_suite` add entries defined elsewhere.
"""
from __future__ import annotations

import importlib
from typing import Any

from rao_jax.envs.base import NodeEnvironment, RootFactory


class _LazyRegistry:
  """Names -> objects; built-in ones are imported on first use from their "module:attribute"."""

  def __init__(self, kind: str, builtin: dict[str, str]):
    self._kind = kind
    self._builtin = builtin
    self._loaded: dict[str, Any] = {}

  def register(self, name: str, value: Any) -> None:
    self._loaded[name] = value

  def names(self) -> list[str]:
    return sorted(set(self._builtin) | set(self._loaded))

  def get(self, name: str) -> Any:
    if name not in self._loaded:
      if name not in self._builtin:
        raise KeyError(f"unknown {self._kind} {name!r}; known: {self.names()}")
      module_name, attribute = self._builtin[name].split(":")
      self._loaded[name] = getattr(importlib.import_module(module_name), attribute)
    return self._loaded[name]


_FACTORIES = _LazyRegistry("environment", {
    "textcraft_synth": "rao_jax.envs.textcraft_synth.env:make_root_environment",
    "diagnostic_choice": "rao_jax.envs.diagnostics:make_choice_environment",
    "diagnostic_relay": "rao_jax.envs.diagnostics:make_relay_environment",
    "long_context": "rao_jax.envs.long_context.env:make_root_environment",
    "chained_research": "rao_jax.envs.chained_research.env:make_root_environment",
})
_SUITES = _LazyRegistry("environment suite", {
    "textcraft_synth": "rao_jax.envs.textcraft_synth.suite:TextCraftSuite",
    "diagnostic_choice": "rao_jax.envs.diagnostics:ChoiceSuite",
    "diagnostic_relay": "rao_jax.envs.diagnostics:RelaySuite",
    "long_context": "rao_jax.envs.long_context.suite:LongContextSuite",
    "chained_research": "rao_jax.envs.chained_research.suite:ChainedResearchSuite",
})


def register(name: str, factory: RootFactory) -> None:
  """Registers a root factory under `name` (for environments outside this package)."""
  _FACTORIES.register(name, factory)


def get_factory(name: str) -> RootFactory:
  return _FACTORIES.get(name)


def make_root_environment(name: str, env_config: dict, task: dict) -> NodeEnvironment:
  """Builds the root node's environment of environment `name` for one task."""
  return get_factory(name)(env_config, task)


def register_suite(name: str, suite_class: Any) -> None:
  """Registers a `rao_jax.envs.suite.Suite` subclass under `name` (for suites outside this package)."""
  _SUITES.register(name, suite_class)


def suite_names() -> list[str]:
  return _SUITES.names()


def get_suite_class(name: str) -> Any:
  """The `Suite` subclass registered as `name`; KeyError listing the known names otherwise."""
  return _SUITES.get(name)
