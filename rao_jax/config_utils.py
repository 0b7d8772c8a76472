"""Helpers for ml_collections config files: presets, and validation before anything compiles.

Every error names the offending field the way it is overridden on the command line
(`config.model.num_heads=...`), so a bad `--config.x.y=` flag fails at once with a readable message.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from rao_jax.model.config import ModelConfig


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
  values = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
  try:
    return ModelConfig.from_dict(values).validate()
  except (TypeError, ValueError) as e:
    # ModelConfig names fields "model.<name>"; say where they live in this config instead.
    message, renamed = re.subn(r"(?<![\w.])model\.(?=\w)", f"{field}.", str(e))
    raise ValueError(message if renamed else f"{field}: {e}") from e


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def validate_generate_config(cfg: ml_collections.ConfigDict) -> ModelConfig:
  """Checks a `configs/generate.py` config; returns its ModelConfig. Raises ValueError naming the field."""
  for name in ("model", "tokenizer", "checkpoint", "seed", "max_new_tokens", "temperature", "workdir",
               "chat"):
    _require(name in cfg, f"config.{name} is missing")
  model_config = model_config_from(cfg.model)
  _require(_is_int(cfg.seed) and cfg.seed >= 0, f"config.seed={cfg.seed!r} must be a non-negative integer")
  _require(_is_int(cfg.max_new_tokens) and cfg.max_new_tokens > 0,
           f"config.max_new_tokens={cfg.max_new_tokens!r} must be a positive integer")
  _require(isinstance(cfg.temperature, (int, float)) and cfg.temperature >= 0,
           f"config.temperature={cfg.temperature!r} must be >= 0 (0 means greedy)")
  _require(isinstance(cfg.tokenizer, str), f"config.tokenizer={cfg.tokenizer!r} must be a path or ''")
  _require(isinstance(cfg.checkpoint, str), f"config.checkpoint={cfg.checkpoint!r} must be a path or ''")
  _require(isinstance(cfg.workdir, str) and cfg.workdir != "",
           f"config.workdir={cfg.workdir!r} must be a directory path")
  return model_config
