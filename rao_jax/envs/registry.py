"""Environments by name, importable inside interpreter worker processes."""
from __future__ import annotations

import importlib

from rao_jax.envs.base import NodeEnvironment, RootFactory

# name -> "module:function" of a RootFactory; imported lazily so a worker loads only what it hosts.
_BUILTIN: dict[str, str] = {
    "textcraft_synth": "rao_jax.envs.textcraft_synth.env:make_root_environment",
    "diagnostic_choice": "rao_jax.envs.diagnostics:make_choice_environment",
    "diagnostic_relay": "rao_jax.envs.diagnostics:make_relay_environment",
}
_REGISTERED: dict[str, RootFactory] = {}


def register(name: str, factory: RootFactory) -> None:
  """Registers `factory` under `name` (for environments outside this package)."""
  _REGISTERED[name] = factory


def get_factory(name: str) -> RootFactory:
  if name in _REGISTERED:
    return _REGISTERED[name]
  if name not in _BUILTIN:
    known = sorted(set(_BUILTIN) | set(_REGISTERED))
    raise KeyError(f"unknown environment {name!r}; known: {known}")
  module_name, function_name = _BUILTIN[name].split(":")
  factory = getattr(importlib.import_module(module_name), function_name)
  _REGISTERED[name] = factory
  return factory


def make_root_environment(name: str, env_config: dict, task: dict) -> NodeEnvironment:
  """Builds the root node's environment of environment `name` for one task."""
  return get_factory(name)(env_config, task)
