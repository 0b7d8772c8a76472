"""The optimiser: AdamW with global-norm clipping and a learning-rate schedule (RAO method spec, section 5).

Paper-era settings: Adam β = (0.9, 0.95), ε = 1e-8, weight decay 0.017, gradient clip 1.0, constant
learning rate 3e-6. Decoupled weight decay applies to matrices (embeddings, projections) and not to the
RMSNorm scales (`decay_norm_scales=False`), the usual choice for transformers.
"""
from __future__ import annotations

import dataclasses

import jax
import optax

_SCHEDULES = ("constant", "warmup_cosine", "linear")

from rao_jax.errors import FieldError


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW and its learning-rate schedule.

  Schedules (step = applied updates so far):
    constant:      lr after `warmup_steps` of linear warm-up from 0 (none if 0).
    warmup_cosine: linear warm-up to lr over `warmup_steps`, then cosine decay to `final_lr_fraction`·lr
                   at `total_steps`.
    linear:        linear warm-up, then linear decay to `final_lr_fraction`·lr at `total_steps`.
  """

  learning_rate: float = 3e-6
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.017
  decay_norm_scales: bool = False
  max_grad_norm: float = 1.0  # 0 disables clipping
  schedule: str = "constant"
  warmup_steps: int = 0
  total_steps: int = 0        # needed by the decaying schedules
  final_lr_fraction: float = 0.0

  def __post_init__(self):
    if self.schedule not in _SCHEDULES:
      raise FieldError("schedule", self.schedule, f"is not one of {_SCHEDULES}")
    if not self.learning_rate > 0:
      raise FieldError("learning_rate", self.learning_rate, "must be positive")
    for name in ("b1", "b2"):
      if not 0 <= getattr(self, name) < 1:
        raise FieldError(name, getattr(self, name), "must be in [0, 1)")
    if not self.eps > 0:
      raise FieldError("eps", self.eps, "must be positive")
    for name in ("weight_decay", "max_grad_norm", "warmup_steps"):
      if getattr(self, name) < 0:
        raise FieldError(name, getattr(self, name), "must be >= 0")
    if not 0 <= self.final_lr_fraction <= 1:
      raise FieldError("final_lr_fraction", self.final_lr_fraction, "must be in [0, 1]")
    if self.schedule != "constant" and self.total_steps <= self.warmup_steps:
      raise FieldError("total_steps", self.total_steps,
                       f"must exceed warmup_steps={self.warmup_steps} for schedule={self.schedule!r}")


def make_schedule(config: OptimizerConfig) -> optax.Schedule:
  """The learning rate as a function of the number of applied updates."""
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup, decay_steps=config.total_steps,
        end_value=config.final_lr_fraction * lr)
  if config.schedule == "linear":
    decay = optax.linear_schedule(lr, config.final_lr_fraction * lr, config.total_steps - warmup)
  else:
    decay = optax.constant_schedule(lr)
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def _decay_mask(params):
  """True for parameters with two or more dimensions (RMSNorm scales are vectors)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """clip_by_global_norm(max_grad_norm) then AdamW(schedule, b1, b2, eps, weight_decay)."""
  adamw = optax.adamw(make_schedule(config), b1=config.b1, b2=config.b2, eps=config.eps,
                      weight_decay=config.weight_decay,
                      mask=None if config.decay_norm_scales else _decay_mask)
  if not config.max_grad_norm:
    return adamw
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adamw)
