"""Helpers for ml_collections config files: presets, and validation before anything compiles.

Every error names the offending field the way it is overridden on the command line
(`config.model.num_heads=...`), so a bad `--config.x.y=` flag fails at once with a readable message.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import ml_collections

from rao_jax.errors import FieldError
from rao_jax.model.config import ModelConfig

T = TypeVar("T")


def sibling_config(config_file: str, name: str, preset: str) -> ml_collections.ConfigDict:
  """`get_config(preset)` of the config file `name` in the directory of `config_file` (a config that
  starts from another's preset, e.g. configs/long_context.py from configs/textcraft.py). Config files
  are scripts, not a package, so the sibling is loaded from its path."""
  path = pathlib.Path(config_file).with_name(name)
  spec = importlib.util.spec_from_file_location(f"_{path.stem}_config", path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f"no config file {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def parse_preset(preset: str | None, known: Iterable[str], *, default: str) -> str:
  """The preset named after the colon of `--config file.py:preset` (`default` when none is given)."""
  known = sorted(known)
  if preset is None or preset == "":
    preset = default
  if preset not in known:
    raise ValueError(f"unknown preset {preset!r}; known presets are {known}")
  return preset


def model_config_from(model_cfg: Mapping[str, Any], *, field: str = "config.model") -> ModelConfig:
  """The validated `ModelConfig` of a config's `model` section; ValueError names the bad field."""
  return build(ModelConfig, model_cfg, field.removeprefix("config."))


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def validate_generate_config(cfg: ml_collections.ConfigDict) -> ModelConfig:
  """Checks a `configs/generate.py` config; returns its ModelConfig. Raises ValueError naming the field."""
  for name in ("model", "tokenizer", "checkpoint", "seed", "max_new_tokens", "temperature", "workdir",
               "cache_dir", "chat"):
    _require(name in cfg, f"config.{name} is missing")
  model_config = model_config_from(cfg.model)
  _require(_is_int(cfg.seed) and cfg.seed >= 0, f"config.seed={cfg.seed!r} must be a non-negative integer")
  _require(_is_int(cfg.max_new_tokens) and cfg.max_new_tokens > 0,
           f"config.max_new_tokens={cfg.max_new_tokens!r} must be a positive integer")
  _require(isinstance(cfg.temperature, (int, float)) and cfg.temperature >= 0,
           f"config.temperature={cfg.temperature!r} must be >= 0 (0 means greedy)")
  _require(isinstance(cfg.tokenizer, str), f"config.tokenizer={cfg.tokenizer!r} must be a path or ''")
  _require(isinstance(cfg.checkpoint, str), f"config.checkpoint={cfg.checkpoint!r} must be a path or ''")
  _require(isinstance(cfg.workdir, str), f"config.workdir={cfg.workdir!r} must be a path or ''")
  _require(isinstance(cfg.cache_dir, str) and cfg.cache_dir != "",
           f"config.cache_dir={cfg.cache_dir!r} must be a directory path")
  return model_config


# ---------------------------------------------------------------------------------- the generic builder


def _plain(section: Any) -> dict[str, Any]:
  return section.to_dict() if isinstance(section, ml_collections.ConfigDict) else dict(section)


def _checked_value(value: Any, hint: Any, override: str) -> Any:
  """`value` for a field annotated `hint`: lists become tuples; simple types are checked."""
  origin = typing.get_origin(hint)
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise ValueError(f"{override}={value!r} must be a sequence")
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)
  if hint is bool and not isinstance(value, bool):
    raise ValueError(f"{override}={value!r} must be True or False")
  if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
    raise ValueError(f"{override}={value!r} must be an integer")
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{override}={value!r} must be a number")
    return float(value)
  if hint is str and not isinstance(value, str):
    raise ValueError(f"{override}={value!r} must be a string")
  return value


def build(cls: type[T], section: Mapping[str, Any], path: str) -> T:
  """`cls(**section)` for a frozen dataclass `cls` whose config section `section` (at `config.{path}`)
  mirrors its fields one to one; dataclass-typed fields are built from their own sub-sections.

  Fields the section leaves out keep their defaults (run-time fields such as a vocabulary limit are
  filled in by the trainer); a left-out dataclass-typed field without a default is built from its
  own defaults. Every error names the command-line override that fixes it:
  `--config.{path}.{field}=...`.
  """
  hints = typing.get_type_hints(cls)
  fields = {f.name for f in dataclasses.fields(cls) if f.init}
  required = {f.name for f in dataclasses.fields(cls)
              if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
  values = _plain(section)
  for name in sorted(required - set(values)):
    if not dataclasses.is_dataclass(hints[name]):
      raise ValueError(f"--config.{path}.{name} is missing (a required setting of {cls.__name__})")
    values[name] = {}  # a section left out: its own defaults
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(f"--config.{path}.{unknown[0]} is not a setting of {cls.__name__} (known: {sorted(fields)})")
  kwargs = {}
  for name, value in values.items():
    hint, override = hints[name], f"--config.{path}.{name}"
    if dataclasses.is_dataclass(hint):
      if not isinstance(value, (Mapping, ml_collections.ConfigDict)):
        raise ValueError(f"{override} must be a section of {hint.__name__}'s fields, got {value!r}")
      kwargs[name] = build(hint, value, f"{path}.{name}")
    elif not isinstance(hint, types.UnionType):
      kwargs[name] = _checked_value(value, hint, override)
    else:
      kwargs[name] = value
  try:
    return cls(**kwargs)
  except FieldError as e:
    raise ValueError(f"--config.{path}.{e.field}={e.value!r} {e.problem}") from e
  except (TypeError, ValueError) as e:
    raise ValueError(f"--config.{path}: {e}") from e
