"""Config of `experiments/train_textcraft.py` and `experiments/evaluate.py` (RAO on TextCraft-Synth).

  python experiments/train_textcraft.py --config configs/textcraft.py:tiny
  python experiments/train_textcraft.py --config configs/textcraft.py:tiny_linear    # delegation off
  python experiments/train_textcraft.py --config configs/textcraft.py:qwen3_4b \
      --config.model.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=gs://bucket/run1

Presets:
  tiny:        CPU. A small world, a 1.0M-parameter model warm-started by SFT on expert
               transcripts (minimal prompts, 1K context, item names as single tokens), then RAO
               steps on easy + medium training tasks; greedy eval per tier.
  tiny_linear: the same with delegation off (the single-agent baseline: same model, budget, window).
  qwen3_4b:    the paper's hyper-parameters (16 tasks × G = 8, CISPO, Adam lr 3e-6 constant,
               β = (0.9, 0.95), wd 0.017, clip 1.0, 8K context, 25 steps per node, depth 6, λ = 0,
               inverse-frequency depth weights, ~540 steps) on an imported Qwen3-4B checkpoint, with
               float32 master weights and bfloat16 compute (sampling uses a bfloat16 copy),
               query-chunked attention (train step and prefills) and layer remat (docs/performance.md).
Every field is validated by `rao_jax.train.settings.settings_from_config` before anything compiles.
"""
from __future__ import annotations

import ml_collections

from rao_jax import config_utils
from rao_jax.model import config as model_config

PRESETS = ("tiny", "tiny_linear", "qwen3_4b")

# A 0.6M-parameter decoder for CPU runs: the Qwen3 block (QK-norm, GQA, SwiGLU, tied embeddings) at
# 2 layers × 128 wide. The vocabulary holds the in-repo tokenizer: the toy world's 830 item names as
# single pieces, 256 bytes, chat markers and learned pieces.
_TINY_MODEL = model_config.ModelConfig(vocab_size=1536, hidden_size=128, num_layers=2, num_heads=4,
                                       num_kv_heads=2, head_dim=32, intermediate_size=384,
                                       rope_theta=10_000.0, tie_embeddings=True)


def _tiny() -> ml_collections.ConfigDict:
  """The CPU preset: every choice is made so that RAO visibly learns in 15 minutes on 2 cores.

  docs/textcraft_synth.md lists how the toy setting deviates from the paper's and why.
  """
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.workdir = "workdir/textcraft_tiny"

  cfg.env = ml_collections.ConfigDict()
  cfg.env.name = "textcraft_synth"
  cfg.env.world = "toy"                  # toy recipes: 1 unit in, 1 out, recipe trees without repeats
  cfg.env.info_style = "compact"         # get_info -> {item: {ingredient: units}}: short observations
  cfg.env.dataset = "toy"                # tfds builder config of the tasks (built in {workdir}/data)

  cfg.data = ml_collections.ConfigDict()
  cfg.data.train_difficulties = ("easy", "medium")
  cfg.data.max_train_tasks = 0           # 0: every training task of those difficulties

  cfg.model = ml_collections.ConfigDict(_TINY_MODEL.to_dict())
  cfg.model.checkpoint = ""              # Hugging Face Qwen3 directory; empty: SFT warm start

  cfg.tokenizer = ml_collections.ConfigDict()
  cfg.tokenizer.path = ""                # empty: SentencePiece trained in {workdir}/tokenizer
  cfg.tokenizer.vocab_size = 1536
  cfg.tokenizer.corpus_examples = 200
  cfg.tokenizer.transcript_tasks = 48
  cfg.tokenizer.whole_item_names = True  # each of the world's items is one token (copying = one token)

  cfg.warm_start = ml_collections.ConfigDict()
  # Mostly flat experts, some delegating ones: a policy that knows the tools and rarely delegates,
  # as the paper's base model; RL has to find out that delegating pays on medium tasks.
  cfg.warm_start.recursive_fraction = 0.15
  cfg.warm_start.difficulties = ("easy", "medium")
  cfg.warm_start.max_tasks_per_difficulty = 0   # 0: every training task of those difficulties
  cfg.warm_start.max_own_crafts = 1      # the delegating expert hands every crafted ingredient to a child
  cfg.warm_start.crafts_per_cell = 2
  cfg.warm_start.transcript_style = "compact"  # no thoughts, one gather per delegation, craft + finish
  # Item-renamed copies of every expert tree: names can only be predicted by copying them from the
  # goal and the observations, so the warm start generalises to held-out items.
  cfg.warm_start.renamed_copies = 8
  cfg.warm_start.num_steps = 400
  cfg.warm_start.rows_per_batch = 16
  cfg.warm_start.row_length = 320
  # lr 1e-2 with a cosine decay: copying emerges after ~200 steps and is ~98% right by step 400
  # (lr 3e-3: 86% at step 500; docs/results.md).
  cfg.warm_start.learning_rate = 1e-2
  cfg.warm_start.schedule = "warmup_cosine"
  cfg.warm_start.warmup_steps = 20
  cfg.warm_start.attention_chunk_size = 0  # queries per attention block (0: all at once)

  cfg.rollout = ml_collections.ConfigDict()
  cfg.rollout.num_slots = 64
  # Every node of a recursive solution fits; a flat solution fits on 29 of 30 held-out easy tasks,
  # 2 of 30 medium ones and no hard one (scripts/transcript_lengths.py prints the table).
  cfg.rollout.context_window = 320
  cfg.rollout.completion_limit = 48
  cfg.rollout.max_steps_per_node = 12
  cfg.rollout.max_depth = 12             # hard and extreme trees reach depth 8 and 11
  cfg.rollout.delegation = True
  cfg.rollout.prompt_style = "minimal"    # "full" for instruction-tuned checkpoints (qwen3_4b)
  cfg.rollout.decode_steps_per_round = 48
  cfg.rollout.temperature = 1.0          # training samples; evaluation is greedy
  cfg.rollout.top_p = 1.0
  cfg.rollout.prefill_chunk_buckets = (64, 320)
  cfg.rollout.prefill_row_buckets = (4, 16, 64)
  cfg.rollout.prefill_attention_chunk_size = 0    # queries per attention block in a prefill (0: all)

  cfg.interpreter = ml_collections.ConfigDict()
  cfg.interpreter.num_workers = 1
  cfg.interpreter.cell_time_limit_s = 3.0
  cfg.interpreter.memory_limit_mb = 1024

  cfg.rl = ml_collections.ConfigDict()
  cfg.rl.num_steps = 30
  cfg.rl.tasks_per_step = 8              # B root tasks per step
  cfg.rl.samples_per_task = 8            # G trees per task (the paper's G)
  cfg.rl.loss = "cispo"                  # "cispo" | "ppo_clip" | "reinforce"
  cfg.rl.cispo_clip_max = 5.0
  cfg.rl.bonus_weight = 0.0              # λ of the delegation bonus (0 for TextCraft-Synth)
  cfg.rl.baseline = "leave_one_out"
  cfg.rl.depth_weighting = "inverse_frequency"
  cfg.rl.row_length = 320                # packed training rows (= the context window)
  cfg.rl.rows_per_micro_batch = 32       # the step accumulates as many micro-batches as the trees need
  cfg.rl.logits_chunk_size = 0
  cfg.rl.attention_chunk_size = 0        # queries per attention block (0: all at once)
  cfg.rl.remat = False                   # recompute each layer in the backward pass (activation memory)

  cfg.optimizer = ml_collections.ConfigDict()
  # lr 1e-3 flips the policy to delegating as fast but lost the format once (held-out hard 28 -> 11
  # -> 26 of 30 at steps 10, 20, 30); 5e-4 held 28-29 of 30 (docs/results.md).
  cfg.optimizer.learning_rate = 5e-4
  cfg.optimizer.b1 = 0.9
  cfg.optimizer.b2 = 0.95
  cfg.optimizer.eps = 1e-8
  cfg.optimizer.weight_decay = 0.017
  cfg.optimizer.max_grad_norm = 1.0
  cfg.optimizer.schedule = "constant"
  cfg.optimizer.warmup_steps = 0

  cfg.eval = ml_collections.ConfigDict()
  cfg.eval.every_steps = 10              # also before the first step and after the last
  cfg.eval.split = "val"
  cfg.eval.difficulties = ("easy", "medium", "hard", "extreme")
  cfg.eval.tasks_per_difficulty = 30

  cfg.checkpoint = ml_collections.ConfigDict()
  cfg.checkpoint.every_steps = 5
  cfg.checkpoint.max_to_keep = 2

  cfg.log = ml_collections.ConfigDict()
  cfg.log.tensorboard = True
  cfg.log.train_trees_every = 5          # write the training trees of every k-th step (0: never)
  cfg.log.progress_bar = True
  return cfg


def _qwen3_4b() -> ml_collections.ConfigDict:
  cfg = _tiny()
  cfg.workdir = "workdir/textcraft_qwen3_4b"
  cfg.env.world = "paper"
  cfg.env.info_style = "full"
  cfg.env.dataset = "paper"
  cfg.data.train_difficulties = ("medium",)
  cfg.model = ml_collections.ConfigDict(model_config.get_preset("qwen3_4b").to_dict())
  cfg.model.param_dtype = "float32"      # master weights (bfloat16 would round away lr-3e-6 steps)
  cfg.model.checkpoint = ""              # required: --config.model.checkpoint=/path/to/Qwen3-4B
  cfg.tokenizer.path = ""                # empty: the checkpoint's tokenizer
  # The warm-start fields fix only how expert transcripts read (for the tokenizer identity and for
  # optional SFT): the imported checkpoint is the starting policy.
  cfg.warm_start.row_length = 8192
  cfg.warm_start.transcript_style = "spec"
  cfg.warm_start.max_own_crafts = 8
  cfg.warm_start.crafts_per_cell = 1
  cfg.warm_start.renamed_copies = 0
  cfg.warm_start.recursive_fraction = 0.5
  cfg.rollout.num_slots = 128
  cfg.rollout.prompt_style = "full"
  cfg.rollout.context_window = 8192
  cfg.rollout.completion_limit = 2048
  cfg.rollout.max_steps_per_node = 25
  cfg.rollout.max_depth = 6
  cfg.rollout.decode_steps_per_round = 256
  cfg.rollout.prefill_chunk_buckets = (256, 1024, 4096)
  cfg.rollout.prefill_row_buckets = (1, 8, 32, 128)
  cfg.rollout.prefill_attention_chunk_size = 512  # [rows, 32, 512, 8192] float32 scores per block
  cfg.interpreter.num_workers = 16
  cfg.rl.num_steps = 540                 # ~10 epochs over the paper's 852 medium tasks
  cfg.rl.tasks_per_step = 16
  cfg.rl.samples_per_task = 8
  cfg.rl.row_length = 8192
  cfg.rl.rows_per_micro_batch = 16
  cfg.rl.logits_chunk_size = 1024
  cfg.rl.attention_chunk_size = 1024
  cfg.rl.remat = True
  cfg.optimizer.learning_rate = 3e-6
  cfg.eval.every_steps = 20
  cfg.eval.difficulties = ("easy", "medium", "hard", "extreme")
  cfg.eval.tasks_per_difficulty = 50
  cfg.checkpoint.every_steps = 10
  cfg.checkpoint.max_to_keep = 3
  cfg.log.train_trees_every = 20
  return cfg


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The training config of `preset` (default "tiny")."""
  name = config_utils.parse_preset(preset, PRESETS, default="tiny")
  cfg = _qwen3_4b() if name == "qwen3_4b" else _tiny()
  if name == "tiny_linear":
    cfg.workdir = "workdir/textcraft_tiny_linear"
    cfg.rollout.delegation = False
    cfg.warm_start.recursive_fraction = 0.0
  cfg.preset = name
  return cfg
