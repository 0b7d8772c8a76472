"""A `configs/textcraft.py` config, validated into the typed settings of every part of a RAO run.

`settings_from_config` builds each part's frozen config (`RolloutConfig`, `AdvantageConfig`, ...) from the
ml_collections config before anything is built or compiled; any bad value raises ValueError naming the
field as it is overridden on the command line (`config.rollout.num_slots=...`).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

import ml_collections

from rao_jax import config_utils
from rao_jax.agent.interpreter.pool import InterpreterConfig
from rao_jax.envs.textcraft_synth.dataset import BUILDER_CONFIGS
from rao_jax.envs.textcraft_synth.env import INFO_STYLES
from rao_jax.envs.textcraft_synth.tasks import DIFFICULTIES, SPLITS
from rao_jax.envs.textcraft_synth.world import WORLD_PRESETS
from rao_jax.model.config import ModelConfig
from rao_jax.rl.advantages import AdvantageConfig
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.train.optimizer import OptimizerConfig
from rao_jax.train.policy_update import UpdateConfig
from rao_jax.train.sft import SFTConfig, SFTDataConfig
from rao_jax.train.train_step import TrainStepConfig
from rao_jax.train.warm_start import TokenizerConfig

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """Greedy evaluation on `tasks_per_difficulty` tasks of each of `difficulties` of `split`."""

  every_steps: int
  split: str
  difficulties: tuple[str, ...]
  tasks_per_difficulty: int


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a RAO run on TextCraft-Synth needs, validated."""

  preset: str
  seed: int
  workdir: str
  env_name: str
  world: str
  info_style: str
  dataset: str
  train_difficulties: tuple[str, ...]
  max_train_tasks: int
  model: ModelConfig
  model_checkpoint: str
  tokenizer: TokenizerConfig
  sft_data: SFTDataConfig
  sft: SFTConfig
  rollout: RolloutConfig
  interpreter: InterpreterConfig
  num_steps: int
  tasks_per_step: int
  samples_per_task: int
  update: UpdateConfig                # advantages, loss, optimiser, packed rows of each RAO step
  eval: EvalSettings
  checkpoint_every: int
  max_checkpoints: int
  tensorboard: bool
  train_trees_every: int
  progress_bar: bool

  @property
  def env_config(self) -> dict[str, Any]:
    return {"world": self.world, "info_style": self.info_style}

  @property
  def greedy_rollout(self) -> RolloutConfig:
    return dataclasses.replace(self.rollout, sampling=SamplingConfig(temperature=0.0))


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _positive_int(cfg: ml_collections.ConfigDict, section: str, name: str) -> int:
  value = cfg[section][name]
  _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
           f"config.{section}.{name}={value!r} must be a positive integer")
  return value


def _difficulties(value: Any, field: str) -> tuple[str, ...]:
  value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  unknown = [d for d in value if d not in DIFFICULTIES]
  _require(value and not unknown, f"config.{field}={value!r} must be a non-empty subset of {DIFFICULTIES}")
  return value


def _built(section: str, factory: Callable[..., T], **kwargs) -> T:
  """factory(**kwargs); its ValueError/TypeError reworded to name the field as `config.{section}.x`."""
  try:
    return factory(**kwargs)
  except (TypeError, ValueError) as e:
    message = str(e)
    # The configs name fields "<prefix>.<name>" or "<Class>.<name>"; say where they live in this config.
    message, renamed = re.subn(r"(?<![\w.])(?:[a-z_]+|[A-Z]\w+Config)\.(?=[a-z_]+\b)", f"config.{section}.",
                               message, count=1)
    raise ValueError(message if renamed else f"config.{section}: {message}") from e


def settings_from_config(cfg: ml_collections.ConfigDict) -> Settings:
  """Validates `cfg` (see configs/textcraft.py) into `Settings`; ValueError names the bad field."""
  for section in ("env", "data", "model", "tokenizer", "warm_start", "rollout", "interpreter", "rl",
                  "optimizer", "eval", "checkpoint", "log"):
    _require(section in cfg, f"config.{section} is missing")
  _require(isinstance(cfg.seed, int) and cfg.seed >= 0, f"config.seed={cfg.seed!r} must be >= 0")
  _require(isinstance(cfg.workdir, str) and cfg.workdir, f"config.workdir={cfg.workdir!r} must be a path")
  _require(cfg.env.name == "textcraft_synth",
           f"config.env.name={cfg.env.name!r}: this trainer runs 'textcraft_synth'")
  _require(cfg.env.world in WORLD_PRESETS,
           f"config.env.world={cfg.env.world!r} is not one of {sorted(WORLD_PRESETS)}")
  _require(cfg.env.info_style in INFO_STYLES,
           f"config.env.info_style={cfg.env.info_style!r} is not one of {INFO_STYLES}")
  datasets = [c.name for c in BUILDER_CONFIGS]
  _require(cfg.env.dataset in datasets, f"config.env.dataset={cfg.env.dataset!r} is not one of {datasets}")

  model_values = {k: v for k, v in cfg.model.to_dict().items() if k != "checkpoint"}
  model = config_utils.model_config_from(model_values)
  _require(model.param_dtype == "float32",
           f"config.model.param_dtype={model.param_dtype!r}: the optimizer updates the stored parameters, and a "
           "bfloat16 weight w rounds away any step below about |w|/512, so Adam steps of ~learning_rate "
           "(3e-6 in the paper) are lost; use param_dtype='float32' master weights (config.model.dtype stays "
           "the compute dtype, and the rollout engine samples from a copy cast to it)")
  checkpoint = cfg.model.get("checkpoint", "")
  _require(isinstance(checkpoint, str), f"config.model.checkpoint={checkpoint!r} must be a path or ''")
  if cfg.preset == "qwen3_4b":
    _require(bool(checkpoint), "config.model.checkpoint is required by the qwen3_4b preset "
                               "(a Hugging Face Qwen3-4B directory)")

  tok = cfg.tokenizer
  tokenizer = _built("tokenizer", TokenizerConfig, path=tok.path, vocab_size=tok.vocab_size,
                     corpus_examples=tok.corpus_examples, transcript_tasks=tok.transcript_tasks,
                     whole_item_names=tok.whole_item_names)
  if not checkpoint and not tok.path:
    _require(tok.vocab_size <= model.vocab_size,
             f"config.tokenizer.vocab_size={tok.vocab_size} exceeds config.model.vocab_size={model.vocab_size}")

  ro = cfg.rollout
  sampling = _built("rollout", SamplingConfig, temperature=ro.temperature, top_p=ro.top_p)
  rollout = _built("rollout", RolloutConfig, num_slots=ro.num_slots, context_window=ro.context_window,
                   completion_limit=ro.completion_limit, max_steps_per_node=ro.max_steps_per_node,
                   max_depth=ro.max_depth, delegation=ro.delegation, prompt_style=ro.prompt_style,
                   decode_steps_per_round=ro.decode_steps_per_round,
                   prefill_chunk_buckets=tuple(ro.prefill_chunk_buckets),
                   prefill_row_buckets=tuple(ro.prefill_row_buckets),
                   prefill_attention_chunk_size=ro.prefill_attention_chunk_size, sampling=sampling)
  interpreter = _built("interpreter", InterpreterConfig, num_workers=cfg.interpreter.num_workers,
                       cell_time_limit_s=cfg.interpreter.cell_time_limit_s,
                       memory_limit_mb=cfg.interpreter.memory_limit_mb, max_depth=rollout.max_depth,
                       delegation=rollout.delegation)

  ws = cfg.warm_start
  sft_data = _built("warm_start", SFTDataConfig, recursive_fraction=ws.recursive_fraction,
                    difficulties=_difficulties(ws.difficulties, "warm_start.difficulties"),
                    max_tasks_per_difficulty=ws.max_tasks_per_difficulty, world=cfg.env.world,
                    info_style=cfg.env.info_style, delegation=rollout.delegation,
                    max_steps_per_node=rollout.max_steps_per_node, max_depth=rollout.max_depth,
                    context_window=rollout.context_window, prompt_style=rollout.prompt_style,
                    max_own_crafts=ws.max_own_crafts, crafts_per_cell=ws.crafts_per_cell,
                    transcript_style=ws.transcript_style, renamed_copies=ws.renamed_copies, seed=cfg.seed)
  sft_optimizer = _built("warm_start", OptimizerConfig, learning_rate=ws.learning_rate, weight_decay=0.0,
                         warmup_steps=ws.warmup_steps, schedule=ws.schedule, total_steps=ws.num_steps)
  sft = _built("warm_start", SFTConfig, optimizer=sft_optimizer, num_steps=ws.num_steps,
               rows_per_batch=ws.rows_per_batch, row_length=ws.row_length,
               attention_chunk_size=ws.attention_chunk_size, seed=cfg.seed)
  _require(bool(checkpoint) or ws.row_length >= rollout.context_window,
           f"config.warm_start.row_length={ws.row_length} must be >= config.rollout.context_window="
           f"{rollout.context_window} (a node sequence is one row)")

  rl = cfg.rl
  for name in ("num_steps", "tasks_per_step", "row_length", "rows_per_micro_batch"):
    _positive_int(cfg, "rl", name)
  _require(isinstance(rl.samples_per_task, int) and rl.samples_per_task >= 2,
           f"config.rl.samples_per_task={rl.samples_per_task!r} must be >= 2 (leave-one-out baseline)")
  _require(rl.row_length >= rollout.context_window,
           f"config.rl.row_length={rl.row_length} must be >= config.rollout.context_window="
           f"{rollout.context_window} (a node sequence is one row)")
  advantage = _built("rl", AdvantageConfig, bonus_weight=rl.bonus_weight, baseline=rl.baseline,
                     depth_weighting=rl.depth_weighting)
  loss_options = (("clip_max", float(rl.cispo_clip_max)),) if rl.loss == "cispo" else ()
  _require(rl.loss in ("cispo", "ppo_clip", "reinforce"),
           f"config.rl.loss={rl.loss!r} is not one of ('cispo', 'ppo_clip', 'reinforce')")
  _require(rl.loss != "cispo" or rl.cispo_clip_max > 0,
           f"config.rl.cispo_clip_max={rl.cispo_clip_max} must be > 0")
  train_step = _built("rl", TrainStepConfig, loss=rl.loss, loss_options=loss_options,
                      logits_chunk_size=rl.logits_chunk_size, attention_chunk_size=rl.attention_chunk_size,
                      remat=rl.remat)
  _require(not rl.logits_chunk_size or rl.row_length % rl.logits_chunk_size == 0,
           f"config.rl.logits_chunk_size={rl.logits_chunk_size} must divide config.rl.row_length={rl.row_length}")
  opt = cfg.optimizer
  optimizer = _built("optimizer", OptimizerConfig, learning_rate=opt.learning_rate, b1=opt.b1, b2=opt.b2,
                     eps=opt.eps, weight_decay=opt.weight_decay, max_grad_norm=opt.max_grad_norm,
                     schedule=opt.schedule, warmup_steps=opt.warmup_steps, total_steps=rl.num_steps)

  _require(cfg.eval.split in SPLITS, f"config.eval.split={cfg.eval.split!r} is not one of {SPLITS}")
  eval_settings = EvalSettings(every_steps=_positive_int(cfg, "eval", "every_steps"), split=cfg.eval.split,
                               difficulties=_difficulties(cfg.eval.difficulties, "eval.difficulties"),
                               tasks_per_difficulty=_positive_int(cfg, "eval", "tasks_per_difficulty"))
  _require(isinstance(cfg.log.train_trees_every, int) and cfg.log.train_trees_every >= 0,
           f"config.log.train_trees_every={cfg.log.train_trees_every!r} must be >= 0")
  _require(isinstance(cfg.data.max_train_tasks, int) and cfg.data.max_train_tasks >= 0,
           f"config.data.max_train_tasks={cfg.data.max_train_tasks!r} must be >= 0 (0: all)")

  return Settings(
      preset=cfg.preset, seed=cfg.seed, workdir=cfg.workdir, env_name=cfg.env.name, world=cfg.env.world,
      info_style=cfg.env.info_style, dataset=cfg.env.dataset,
      train_difficulties=_difficulties(cfg.data.train_difficulties, "data.train_difficulties"),
      max_train_tasks=cfg.data.max_train_tasks, model=model, model_checkpoint=checkpoint,
      tokenizer=tokenizer, sft_data=sft_data, sft=sft, rollout=rollout, interpreter=interpreter,
      num_steps=rl.num_steps, tasks_per_step=rl.tasks_per_step, samples_per_task=rl.samples_per_task,
      update=UpdateConfig(advantage=advantage, train_step=train_step, optimizer=optimizer,
                          row_length=rl.row_length, rows_per_micro_batch=rl.rows_per_micro_batch),
      eval=eval_settings,
      checkpoint_every=_positive_int(cfg, "checkpoint", "every_steps"),
      max_checkpoints=_positive_int(cfg, "checkpoint", "max_to_keep"), tensorboard=bool(cfg.log.tensorboard),
      train_trees_every=cfg.log.train_trees_every, progress_bar=bool(cfg.log.progress_bar))
