"""A training config file, validated into the typed settings of every part of a RAO run.

Each section of a config (`configs/textcraft.py`, `configs/diagnostic.py`) mirrors one frozen dataclass
field for field, and one generic builder (`config_utils.build`) makes them:

    env         the suite's Config (`env.name` picks the suite from `rao_jax.envs.registry`)
    data        DataConfig               model        ModelConfig
    tokenizer   TokenizerConfig          warm_start   WarmStartConfig (data: SFTDataConfig, sft: SFTConfig)
    rollout     RolloutConfig            interpreter  InterpreterConfig
    rl          LoopConfig               policy_update  UpdateConfig (advantage, train_step, optimizer)
    eval        EvalConfig               checkpoint   CheckpointConfig      log   LogConfig
    mesh        sharding.MeshConfig (the device mesh of the train step and the rollout programs)

Every limit is set once: the episode format (delegation, depth, cells, window, prompt style) lives in
`rollout` and reaches the warm start and the interpreter from there; the run's `seed` seeds everything;
an optimiser's `total_steps` of 0 means its phase's step count. Errors name the `--config.a.b=` override
that fixes them, before anything is built or compiled.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from rao_jax import config_utils
from rao_jax.agent.interpreter.pool import InterpreterConfig
from rao_jax.envs import registry
from rao_jax.envs.suite import Suite, check_difficulties
from rao_jax.errors import FieldError
from rao_jax.model.config import ModelConfig
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.sharding import MeshConfig
from rao_jax.train.policy_update import UpdateConfig
from rao_jax.train.sft import SFTConfig, SFTDataConfig
from rao_jax.train.warm_start import TokenizerConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The RL tasks: `split`'s tasks of `train_difficulties`, the first `max_train_tasks` (0: all).

  The SFT warm start and the tokenizer always use the "train" split. `split` may name another split
  of the suite (chained research's "rl": questions over a graph the warm start never saw, so RL
  rewards reading facts, not recalling them).
  """

  train_difficulties: tuple[str, ...] = ("easy", "medium")
  max_train_tasks: int = 0
  split: str = "train"

  def __post_init__(self):
    if self.max_train_tasks < 0:
      raise FieldError("max_train_tasks", self.max_train_tasks, "must be >= 0 (0: all)")


@dataclasses.dataclass(frozen=True)
class WarmStartConfig:
  """The starting policy: an imported Hugging Face checkpoint directory, or (`checkpoint` empty) a random
  initialisation trained by SFT (`sft`) on the suite's demonstrations (`data`)."""

  checkpoint: str = ""
  data: SFTDataConfig = SFTDataConfig()
  sft: SFTConfig = SFTConfig()


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """`num_steps` RAO steps, each on `tasks_per_step` root tasks × `samples_per_task` trees (B × G)."""

  num_steps: int = 540
  tasks_per_step: int = 16
  samples_per_task: int = 8

  def __post_init__(self):
    for name in ("num_steps", "tasks_per_step"):
      if getattr(self, name) <= 0:
        raise FieldError(name, getattr(self, name), "must be positive")
    if self.samples_per_task < 2:
      raise FieldError("samples_per_task", self.samples_per_task, "must be >= 2 (leave-one-out baseline)")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Greedy evaluation on the first `tasks_per_difficulty` tasks of each of `difficulties` of `split`,
  before the first step, every `every_steps` steps and after the last."""

  every_steps: int = 20
  split: str = "val"
  difficulties: tuple[str, ...] = ("easy", "medium", "hard", "extreme")
  tasks_per_difficulty: int = 50

  def __post_init__(self):
    for name in ("every_steps", "tasks_per_difficulty"):
      if getattr(self, name) <= 0:
        raise FieldError(name, getattr(self, name), "must be positive")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """A checkpoint every `every_steps` steps and after the last; the last `max_to_keep` are kept."""

  every_steps: int = 10
  max_to_keep: int = 3

  def __post_init__(self):
    for name in ("every_steps", "max_to_keep"):
      if getattr(self, name) <= 0:
        raise FieldError(name, getattr(self, name), "must be positive")


@dataclasses.dataclass(frozen=True)
class LogConfig:
  """TensorBoard events, the training trees of every `train_trees_every`-th step (0: never), a progress bar."""

  tensorboard: bool = True
  train_trees_every: int = 20
  progress_bar: bool = True

  def __post_init__(self):
    if self.train_trees_every < 0:
      raise FieldError("train_trees_every", self.train_trees_every, "must be >= 0 (0: never)")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a RAO run needs, validated (see the module docstring)."""

  preset: str
  seed: int
  workdir: str
  env_name: str
  env: Any                      # the suite's Config
  data: DataConfig
  model: ModelConfig
  tokenizer: TokenizerConfig
  warm_start: WarmStartConfig
  rollout: RolloutConfig
  interpreter: InterpreterConfig
  rl: LoopConfig
  policy_update: UpdateConfig
  eval: EvalConfig
  checkpoint: CheckpointConfig
  log: LogConfig
  mesh: MeshConfig

  def suite(self) -> Suite:
    return registry.get_suite_class(self.env_name)(self.env)

  @property
  def greedy_rollout(self) -> RolloutConfig:
    return dataclasses.replace(self.rollout, sampling=SamplingConfig(temperature=0.0))


# Presets whose starting policy is an imported checkpoint (configs/textcraft.py).
CHECKPOINT_PRESETS = ("qwen3_4b", "qwen3_4b_v6e")

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "tokenizer": TokenizerConfig,
             "warm_start": WarmStartConfig, "rollout": RolloutConfig, "interpreter": InterpreterConfig,
             "rl": LoopConfig, "policy_update": UpdateConfig, "eval": EvalConfig, "checkpoint": CheckpointConfig,
             "log": LogConfig, "mesh": MeshConfig}


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _with_run_values(values: dict[str, Any]) -> dict[str, Any]:
  """The config as plain dicts, with the values that follow from others filled in (set once)."""
  seed = values["seed"]
  warm_start = values["warm_start"]
  warm_start.setdefault("data", {})["seed"] = seed
  sft = warm_start.setdefault("sft", {})
  sft["seed"] = seed
  for optimizer, steps in ((sft.get("optimizer", {}), sft.get("num_steps")),
                           (values["policy_update"].get("optimizer", {}), values["rl"].get("num_steps"))):
    if not optimizer.get("total_steps") and steps:
      optimizer["total_steps"] = steps
  return values


def settings_from_config(cfg: ml_collections.ConfigDict) -> Settings:
  """Validates `cfg` into `Settings`; ValueError names the `--config.` override of the bad field."""
  for name in ("preset", "seed", "workdir", "env", *_SECTIONS):
    _require(name in cfg, f"config.{name} is missing")
  _require(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool) and cfg.seed >= 0,
           f"--config.seed={cfg.seed!r} must be an integer >= 0")
  _require(isinstance(cfg.workdir, str) and bool(cfg.workdir), f"--config.workdir={cfg.workdir!r} must be a path")
  values = _with_run_values(cfg.to_dict())
  env = dict(values["env"])
  name = env.pop("name", None)
  try:
    suite_class = registry.get_suite_class(name)
  except KeyError:
    raise ValueError(f"--config.env.name={name!r} is not one of {registry.suite_names()}") from None
  built = {section: config_utils.build(cls, values[section], section) for section, cls in _SECTIONS.items()}
  settings = Settings(preset=cfg.preset, seed=cfg.seed, workdir=cfg.workdir, env_name=name,
                      env=config_utils.build(suite_class.Config, env, "env"), **built)
  _check_consistent(settings, suite_class)
  return settings


def _check_consistent(s: Settings, suite_class: type[Suite]) -> None:
  """Constraints between sections, each error naming an override that fixes it."""
  check_difficulties(suite_class, s.data.train_difficulties, "--config.data.train_difficulties")
  check_difficulties(suite_class, s.warm_start.data.difficulties, "--config.warm_start.data.difficulties")
  check_difficulties(suite_class, s.eval.difficulties, "--config.eval.difficulties")
  _require(s.data.split in suite_class.splits,
           f"--config.data.split={s.data.split!r} is not one of {suite_class.splits}")
  _require(s.eval.split in suite_class.splits,
           f"--config.eval.split={s.eval.split!r} is not one of {suite_class.splits}")
  _require(s.model.param_dtype == "float32",
           f"--config.model.param_dtype={s.model.param_dtype!r}: the optimizer updates the stored parameters, "
           "and a bfloat16 weight w rounds away any step below about |w|/512, so Adam steps of "
           "~learning_rate (3e-6 in the paper) are lost; use param_dtype='float32' master weights "
           "(config.model.dtype stays the compute dtype, and the rollout engine samples from a copy cast to it)")
  imported = bool(s.warm_start.checkpoint)
  if s.preset in CHECKPOINT_PRESETS:
    _require(imported, f"--config.warm_start.checkpoint is required by the {s.preset} preset "
                       "(a Hugging Face Qwen3-4B directory)")
  if not imported and not s.tokenizer.path:
    _require(s.tokenizer.vocab_size <= s.model.vocab_size,
             f"--config.tokenizer.vocab_size={s.tokenizer.vocab_size} exceeds "
             f"--config.model.vocab_size={s.model.vocab_size}")
  window = s.rollout.context_window
  _require(imported or s.warm_start.sft.row_length >= window,
           f"--config.warm_start.sft.row_length={s.warm_start.sft.row_length} must be >= "
           f"--config.rollout.context_window={window} (a node sequence is one row)")
  _require(s.rollout.delegation or s.warm_start.data.recursive_fraction == 0,
           f"--config.warm_start.data.recursive_fraction={s.warm_start.data.recursive_fraction} asks for "
           "delegating demonstrations, but --config.rollout.delegation=False")
  _require(s.policy_update.row_length >= window,
           f"--config.policy_update.row_length={s.policy_update.row_length} must be >= --config.rollout.context_window="
           f"{window} (a node sequence is one row)")
  chunk = s.policy_update.train_step.logits_chunk_size
  _require(not chunk or s.policy_update.row_length % chunk == 0,
           f"--config.policy_update.train_step.logits_chunk_size={chunk} must divide "
           f"--config.policy_update.row_length={s.policy_update.row_length}")
