"""Config of `experiments/train.py` on chained multi-hop research (the DeepDive stand-in).

  python experiments/train.py --config configs/chained_research.py:tiny
  python experiments/train.py --config configs/chained_research.py:tiny_flat      # delegation off
  python experiments/train.py --config configs/chained_research.py:qwen3_4b \
      --config.warm_start.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=gs://bucket/run1

Presets:
  tiny:      CPU. TextCraft's tiny recipe on the "tiny" corpus (~135 entities a graph, every fact in its
             object-last sentence, years and lengths on a coarse grid): the 0.6M-parameter model (vocabulary
             2,048: every entity name and every number one token), 600 SFT steps on expert trees of 2- and
             3-hop questions (flat, except 30% of the 3-hop trees, which delegate; compact search results
             of one result; 4 entity-renamed copies of each), then 20 RAO steps on 2- and 3-hop questions
             of the "rl" split's unseen graph; greedy eval on the 50 + 50 2- and 3-hop val questions. The
             320-token window holds a flat solution of a 2-hop question only, a recursive one of both
             (docs/chained_research.md has the table). Measured, seeds 0 and 1: held-out 0.32 -> 0.46
             and 0.35 -> 0.49 (+0.14, 95% intervals +0.05 to +0.23 and +0.07 to +0.21): RL teaches the
             policy to delegate the 3-hop questions (0.02 -> 0.30 and 0.28, 50 and 48 of 50 roots
             delegating) and to keep answering 2-hop ones alone (0.62 -> 0.62, 0.68 -> 0.70; 0 and 3 of
             50 delegating); about 12 min on 2 cores (docs/results.md, eighteenth session).
  tiny_flat: the same with delegation off (the single-agent baseline: same model, budget, window).
  qwen3_4b:  the paper's DeepDive settings on an imported Qwen3-4B checkpoint: λ = 0, max depth 4, 25 cells
             a node, full prompts and search results, CISPO, Adam lr 3e-6 constant, β = (0.9, 0.95),
             wd 0.017, clip 1.0, 16 tasks × G = 8; an 8K window (the paper served 40K) as configs/textcraft.py's
             qwen3_4b, with its memory settings (v5p: tensor 4).
Each section mirrors one frozen dataclass field for field (named next to it below); every field is
validated by `rao_jax.train.settings.settings_from_config` before anything compiles.
"""
from __future__ import annotations

import ml_collections

from rao_jax import config_utils

PRESETS = ("tiny", "tiny_flat", "qwen3_4b")
_TRAIN = ("2hop", "3hop")
_ALL = ("2hop", "3hop", "4hop", "5hop", "6hop")


def _textcraft(preset: str) -> ml_collections.ConfigDict:
  """configs/textcraft.py's preset: the recipe these presets start from (its model, SFT and RL settings)."""
  return config_utils.sibling_config(__file__, "textcraft.py", preset)


def _env(cfg: ml_collections.ConfigDict, dataset: str, result_style: str, transcript_style: str,
         name_tokens: str = "words", expert_max_results: int = 2) -> None:
  cfg.env = ml_collections.ConfigDict()  # rao_jax.envs.chained_research.suite.ChainedResearchConfig
  cfg.env.name = "chained_research"
  cfg.env.dataset = dataset              # tiny: 1 distractor a page, snippets <= 120 chars, 120 / 50 questions a tier
  cfg.env.result_style = result_style    # "compact": search_web -> ["title: snippet", ...]; "full": dicts
  cfg.env.transcript_style = transcript_style  # "compact": no thoughts, one cell a lookup, no page reads
  cfg.env.expert_max_results = expert_max_results  # results per expert search (the runner-up is often a twin)
  cfg.env.name_tokens = name_tokens      # "names": a trained tokenizer keeps every entity name whole


def _tiny() -> ml_collections.ConfigDict:
  """The CPU preset: TextCraft's tiny recipe with this suite's data, window and tiers."""
  cfg = _textcraft("tiny")
  cfg.workdir = "workdir/chained_research_tiny"
  # The tokenizer keeps every entity name, country and closed-class word as one piece: a child copies
  # its answer as one token, as TextCraft's items (name words alone: docs/results.md, thirteenth session).
  # The expert searches for one result: the hop's page always ranks first (the questions' solvable
  # filter), so a child copies the answer from the one line it sees (teacher-forced copy accuracy after
  # 600 SFT steps 0.94, against 0.79 with two results: docs/results.md, seventeenth session).
  _env(cfg, "tiny", "compact", "compact", name_tokens="names", expert_max_results=1)
  # Names, closed-class words and every number of the coarse-number corpus (about 1,100 whole words)
  # leave room for ~650 learned pieces.
  cfg.model.vocab_size = 2048
  cfg.tokenizer.vocab_size = 2048
  # The toy setting as TextCraft's: a 320-token window holds a flat solution of a 2-hop question but
  # not of a 3-hop one, and a recursive solution of both (scripts/transcript_lengths.py). The warm start
  # learns from flat trees, except 30% of the 3-hop ones, which delegate (15% of all trees, as
  # TextCraft's share): greedily it answers 2-hop questions alone and overflows on 3-hop ones. RL on both
  # tiers then teaches it to delegate where the flat policy overflows, and only there. With delegating
  # demonstrations on both tiers, RL on 3-hop questions alone learned to delegate everywhere, 2-hop
  # questions included, where its recursive solutions are worse than its flat ones; on both tiers it
  # learned not to delegate at all (docs/results.md, seventeenth and eighteenth sessions).
  cfg.warm_start.data.difficulties = _TRAIN
  cfg.warm_start.data.recursive_difficulties = ("3hop",)
  cfg.warm_start.data.recursive_fraction = 0.3
  cfg.data.train_difficulties = _TRAIN
  # RL on the "rl" split's graph, which the warm start never saw: on the train graph the warm start
  # partly recalls facts (sampled success 0.5 there against 0.08 greedy on val, thirteenth session).
  cfg.data.split = "rl"
  # Entity-renamed copies: a name can only be predicted by copying it from the goal or a result.
  # 8 copies (TextCraft's) or copies without the originals gave warm starts that copied far less.
  cfg.warm_start.data.augmented_copies = 4
  cfg.warm_start.sft.num_steps = 600     # copying emerges at 300-500 steps (scripts/probe_warm_start.py)
  cfg.warm_start.sft.rows_per_batch = 16  # TextCraft tiny's 16 × 320 a step
  cfg.warm_start.sft.row_length = 320
  cfg.rollout.context_window = 320
  cfg.rollout.max_depth = 4              # DeepDive's depth cap (the experts use depth 1)
  cfg.rollout.prefill_chunk_buckets = (64, 320)
  cfg.policy_update.row_length = 320
  cfg.policy_update.advantage.bonus_weight = 0.0  # λ = 0 on DeepDive
  # Keep groups whose roots all fail (or all succeed): their children's own rewards still differ, and
  # A = R(child) - b_g is their signal (a deviation from the spec's "groups whose rewards are all
  # equal are dropped", which reads root rewards; not ablated; docs/chained_research.md).
  cfg.policy_update.advantage.drop_zero_variance_groups = False
  # 4- to 6-hop questions fit the window neither flat nor recursive: the tiny preset evaluates the two
  # tiers it can answer, every val question of them.
  cfg.eval.difficulties = _TRAIN
  cfg.eval.tasks_per_difficulty = 50     # the whole val split (with 20, +0.2 on a tier was within noise)
  cfg.eval.every_steps = 20              # before the first step and after the last only
  cfg.rl.num_steps = 20                  # 6-30 s a step
  return cfg


def _qwen3_4b() -> ml_collections.ConfigDict:
  """The paper's DeepDive settings (RAO_METHOD.md, sections 2 and 5) on an imported Qwen3-4B:
  TextCraft's qwen3_4b with this suite's data, depth and tiers."""
  cfg = _textcraft("qwen3_4b")
  cfg.workdir = "workdir/chained_research_qwen3_4b"
  _env(cfg, "paper", "full", "spec")      # spec: thoughts, 5 results, the top page read
  cfg.data.train_difficulties = ("3hop", "4hop")
  cfg.warm_start.data.difficulties = ("3hop", "4hop")
  cfg.warm_start.data.augmented_copies = 0
  cfg.rollout.max_depth = 4
  cfg.eval.difficulties = _ALL
  cfg.eval.tasks_per_difficulty = 50     # DeepDive's 50 held-out tasks, per tier here
  return cfg


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The training config of `preset` (default "tiny")."""
  name = config_utils.parse_preset(preset, PRESETS, default="tiny")
  cfg = _qwen3_4b() if name == "qwen3_4b" else _tiny()
  if name == "tiny_flat":
    cfg.workdir = "workdir/chained_research_tiny_flat"
    cfg.rollout.delegation = False
    cfg.warm_start.data.recursive_fraction = 0.0
  cfg.preset = name
  return cfg
