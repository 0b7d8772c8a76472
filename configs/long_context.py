"""Config of `experiments/train.py` on the long-context suite (the Oolong-Real stand-in).

  python experiments/train.py --config configs/long_context.py:tiny
  python experiments/train.py --config configs/long_context.py:tiny_flat   # the truncated single agent
  python experiments/train.py --config configs/long_context.py:qwen3_4b \
      --config.warm_start.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=gs://bucket/run1

Presets:
  tiny:      CPU, ~14 minutes. TextCraft's toy recipe (`configs/textcraft.py:tiny`: the same 0.6M-parameter
             model, an SFT warm start on expert transcripts with a trained tokenizer, then RAO) on
             transcripts of 1-3 episodes, each >= 6x the 416-token window (docs/long_context.md). Three
             quarters of the expert demonstrations are the flat reader, which prints the first 20 lines
             and answers from them; a quarter are recursive (a child per 20-line chunk, all in one
             gather, each handed the root's `question`); each tree also comes in 3 cast-renamed copies;
             600 SFT steps. RL on 1-episode inputs has to find
             out that delegating pays. λ = 0.4 (the paper's Oolong setting), depth 1.
  tiny_flat: the same with delegation off: a single agent that sees a truncated input (the first
             window's worth of lines), the baseline of docs/results.md.
  qwen3_4b:  the paper's Oolong settings on an imported Qwen3-4B (TextCraft's qwen3_4b hyper-parameters,
             λ = 0.4, max depth 2, 8K window), on the "paper" dataset (~20K-token episodes).
"""
from __future__ import annotations

import ml_collections

from rao_jax import config_utils

PRESETS = ("tiny", "tiny_flat", "qwen3_4b")


def _textcraft(preset: str) -> ml_collections.ConfigDict:
  """configs/textcraft.py's preset: the recipe these presets start from."""
  return config_utils.sibling_config(__file__, "textcraft.py", preset)


def _env(cfg: ml_collections.ConfigDict, dataset: str) -> None:
  cfg.env = ml_collections.ConfigDict()  # rao_jax.envs.long_context.suite.LongContextSuiteConfig
  cfg.env.name = "long_context"
  cfg.env.dataset = dataset              # tfds builder config of the tasks (built in {workdir}/data)
  cfg.env.chunk_lines = 20               # lines an expert node reads at once


def _tiny() -> ml_collections.ConfigDict:
  cfg = _textcraft("tiny")
  cfg.workdir = "workdir/long_context_tiny"
  _env(cfg, "tiny")
  cfg.data.train_difficulties = ("episodes_1",)
  cfg.tokenizer.transcript_tasks = 24
  cfg.warm_start.data.recursive_fraction = 0.25
  cfg.warm_start.data.difficulties = ("episodes_1",)
  # Cast-renamed copies of every expert tree: a sub-goal's name can only be written by copying it from
  # the goal (without them the warm start wrote a wrong name in 19 of 19 by-character sub-goals).
  cfg.warm_start.data.augmented_copies = 3
  cfg.warm_start.sft.num_steps = 600    # children read better: 300 steps gave a warm start whose
                                         # children RL taught to answer 0 (docs/results.md, twelfth session)
  cfg.warm_start.sft.rows_per_batch = 12
  cfg.warm_start.sft.row_length = 416
  cfg.rollout.context_window = 416       # a 20-line chunk node needs ~310 + a completion (scripts/transcript_lengths.py)
  cfg.rollout.completion_limit = 96      # the recursive root's one cell: ~85 tokens
  cfg.rollout.max_steps_per_node = 4
  cfg.rollout.max_depth = 1              # the root delegates; its children read
  cfg.rollout.decode_steps_per_round = 48
  cfg.rollout.prefill_chunk_buckets = (64, 416)
  # Delegation takes over within ~6 steps (docs/results.md); a delegating tree has 16 nodes.
  cfg.rl.num_steps = 10
  cfg.rl.tasks_per_step = 4
  cfg.rl.samples_per_task = 6
  cfg.policy_update.row_length = 416
  cfg.policy_update.advantage.bonus_weight = 0.4  # λ: the paper's Oolong setting
  cfg.eval.every_steps = 10             # before the first step and after the last: a delegating
                                         # evaluation of all 90 val tasks is ~2,600 nodes
  cfg.eval.difficulties = ("episodes_1", "episodes_2", "episodes_3")
  cfg.eval.tasks_per_difficulty = 30    # the whole val split
  return cfg


def _qwen3_4b() -> ml_collections.ConfigDict:
  cfg = _textcraft("qwen3_4b")
  cfg.workdir = "workdir/long_context_qwen3_4b"
  _env(cfg, "paper")
  cfg.env.chunk_lines = 400              # ~4K tokens a child: half its window
  cfg.data.train_difficulties = ("episodes_1", "episodes_2", "episodes_3")
  cfg.warm_start.data.difficulties = ("episodes_1",)
  cfg.rollout.max_depth = 2              # the paper's Oolong depth
  cfg.policy_update.advantage.bonus_weight = 0.4
  cfg.eval.difficulties = ("episodes_1", "episodes_2", "episodes_3")
  cfg.eval.tasks_per_difficulty = 50
  return cfg


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The training config of `preset` (default "tiny")."""
  name = config_utils.parse_preset(preset, PRESETS, default="tiny")
  cfg = _qwen3_4b() if name == "qwen3_4b" else _tiny()
  if name == "tiny_flat":
    cfg.workdir = "workdir/long_context_tiny_flat"
    cfg.rollout.delegation = False
    cfg.warm_start.data.recursive_fraction = 0.0
  cfg.preset = name
  return cfg
