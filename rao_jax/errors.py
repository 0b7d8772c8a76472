"""`FieldError`: a bad value of one field of a frozen config dataclass.

Config dataclasses raise it from `__post_init__`; the generic config builder
(`rao_jax.config_utils.build`) knows where the dataclass sits in a config file and reports the field as
its command-line override, `--config.rollout.num_slots=0 must be a positive integer`. Code that builds a
dataclass directly sees `num_slots=0 must be a positive integer`.
"""
from __future__ import annotations

from typing import Any


class FieldError(ValueError):
  """`field` (a field name of the raising dataclass) holds `value`, which has `problem`."""

  def __init__(self, field: str, value: Any, problem: str):
    self.field, self.value, self.problem = field, value, problem
    super().__init__(f"{field}={value!r} {problem}")
