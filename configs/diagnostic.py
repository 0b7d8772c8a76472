"""Config of `experiments/train.py` on the diagnostic suites: a whole environment suite in one module
(`rao_jax/envs/diagnostics.py`) plus this file, and a RAO run that learns it in about a minute on CPU.

  python experiments/train.py --config configs/diagnostic.py:choice   # finish with the hidden word
  python experiments/train.py --config configs/diagnostic.py:relay    # delegate it to a child that writes

The warm start imitates a guessing expert (a uniformly drawn word per demonstration), so the policy
starts near 1/4 success and RL must find the answer from reward alone. Each section mirrors one frozen
dataclass field for field, as in `configs/textcraft.py`.
"""
from __future__ import annotations

import ml_collections

from rao_jax import config_utils

PRESETS = ("choice", "relay")


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The training config of `preset` (default "choice")."""
  name = config_utils.parse_preset(preset, PRESETS, default="choice")
  cfg = ml_collections.ConfigDict()
  cfg.preset = name
  cfg.seed = 0
  cfg.workdir = f"workdir/diagnostic_{name}"

  cfg.env = ml_collections.ConfigDict()  # envs.diagnostics.DiagnosticConfig
  cfg.env.name = f"diagnostic_{name}"
  cfg.env.answer = "red"
  cfg.env.num_tasks = 64

  cfg.data = ml_collections.ConfigDict()
  cfg.data.train_difficulties = ("all",)
  cfg.data.max_train_tasks = 0
  cfg.data.split = "train"

  cfg.model = ml_collections.ConfigDict(dict(
      vocab_size=512, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16,
      intermediate_size=64, rope_theta=10_000.0, tie_embeddings=True))

  cfg.tokenizer = ml_collections.ConfigDict()
  cfg.tokenizer.path = ""
  cfg.tokenizer.vocab_size = 512
  cfg.tokenizer.corpus_examples = 50
  cfg.tokenizer.transcript_tasks = 64    # all alike: weights the prompts' words over the built-in corpus
  cfg.tokenizer.whole_words = True       # each answer word is one token

  cfg.warm_start = ml_collections.ConfigDict()
  cfg.warm_start.checkpoint = ""
  cfg.warm_start.data = ml_collections.ConfigDict()
  cfg.warm_start.data.recursive_fraction = 1.0 if name == "relay" else 0.0
  cfg.warm_start.data.difficulties = ("all",)
  cfg.warm_start.data.max_tasks_per_difficulty = 4
  cfg.warm_start.data.augmented_copies = 7  # 8 guesses per task
  cfg.warm_start.sft = ml_collections.ConfigDict()
  cfg.warm_start.sft.num_steps = 120
  cfg.warm_start.sft.rows_per_batch = 8
  cfg.warm_start.sft.row_length = 96
  cfg.warm_start.sft.optimizer = ml_collections.ConfigDict()
  cfg.warm_start.sft.optimizer.learning_rate = 1e-2
  cfg.warm_start.sft.optimizer.weight_decay = 0.0
  cfg.warm_start.sft.optimizer.warmup_steps = 5

  cfg.rollout = ml_collections.ConfigDict()
  cfg.rollout.num_slots = 32
  cfg.rollout.context_window = 96
  cfg.rollout.completion_limit = 24
  cfg.rollout.max_steps_per_node = 3
  cfg.rollout.max_depth = 1
  cfg.rollout.delegation = True
  cfg.rollout.prompt_style = "minimal"
  cfg.rollout.decode_steps_per_round = 24
  cfg.rollout.prefill_chunk_buckets = (32, 96)
  cfg.rollout.prefill_row_buckets = (32,)
  cfg.rollout.host_shards = 0  # trees and slots split into this many host shards (0: one per process)

  cfg.interpreter = ml_collections.ConfigDict()
  cfg.interpreter.cell_time_limit_s = 3.0

  cfg.rl = ml_collections.ConfigDict()
  cfg.rl.num_steps = 24
  cfg.rl.tasks_per_step = 4
  cfg.rl.samples_per_task = 8

  cfg.policy_update = ml_collections.ConfigDict()
  cfg.policy_update.row_length = 96
  cfg.policy_update.rows_per_micro_batch = 8
  cfg.policy_update.train_step = ml_collections.ConfigDict()
  cfg.policy_update.train_step.loss = "cispo"
  cfg.policy_update.train_step.loss_options = (("clip_max", 5.0),)
  cfg.policy_update.optimizer = ml_collections.ConfigDict()
  cfg.policy_update.optimizer.learning_rate = 3e-3

  cfg.eval = ml_collections.ConfigDict()
  cfg.eval.every_steps = 8
  cfg.eval.split = "val"
  cfg.eval.difficulties = ("all",)
  cfg.eval.tasks_per_difficulty = 64

  cfg.checkpoint = ml_collections.ConfigDict()
  cfg.checkpoint.every_steps = 8
  cfg.checkpoint.max_to_keep = 2  # the latest and one to fall back to if the latest is damaged

  cfg.log = ml_collections.ConfigDict()
  cfg.log.tensorboard = False
  cfg.log.train_trees_every = 0
  cfg.log.progress_bar = False

  cfg.mesh = ml_collections.ConfigDict()  # sharding.MeshConfig
  cfg.mesh.data = -1
  cfg.mesh.fsdp = 1
  cfg.mesh.tensor = 1
  return cfg
