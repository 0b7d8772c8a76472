"""Config of `experiments/train_textcraft.py` and `experiments/evaluate.py` (RAO on TextCraft-Synth).

  python experiments/train_textcraft.py --config configs/textcraft.py:tiny
  python experiments/train_textcraft.py --config configs/textcraft.py:tiny_linear    # delegation off
  python experiments/train_textcraft.py --config configs/textcraft.py:qwen3_4b \
      --config.warm_start.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=gs://bucket/run1

Presets:
  tiny:        CPU. A small world, a 1.0M-parameter model warm-started by SFT on expert
               transcripts (minimal prompts, 1K context, item names as single tokens), then RAO
               steps on easy + medium training tasks; greedy eval per tier.
  tiny_linear: the same with delegation off (the single-agent baseline: same model, budget, window).
  qwen3_4b:    the paper's hyper-parameters (16 tasks × G = 8, CISPO, Adam lr 3e-6 constant,
               β = (0.9, 0.95), wd 0.017, clip 1.0, 8K context, 25 steps per node, depth 6, λ = 0,
               inverse-frequency depth weights, ~540 steps) on an imported Qwen3-4B checkpoint, with
               float32 master weights and bfloat16 compute (sampling uses a bfloat16 copy),
               query-chunked attention (train step and prefills) and layer remat (docs/performance.md),
               sized for v5p (95 GiB a chip): mesh (data -1, fsdp 1, tensor 4), prefills of <= 64 rows.
  qwen3_4b_v6e: the same sized for v6e (32 GB a chip): tensor 8, 64 slots, 4 rows per micro-batch,
               prefills of <= 32 rows. Memory per chip of both: docs/tpu_memory.md.
Each section mirrors one frozen dataclass field for field (named next to it below); every field is
validated by `rao_jax.train.settings.settings_from_config` before anything compiles.
"""
from __future__ import annotations

import ml_collections

from rao_jax import config_utils
from rao_jax.model import config as model_config

PRESETS = ("tiny", "tiny_linear", "qwen3_4b", "qwen3_4b_v6e")

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
  cfg.seed = 0                           # seeds everything: data order, SFT, sampling, expert draws
  cfg.workdir = "workdir/textcraft_tiny"

  cfg.env = ml_collections.ConfigDict()  # rao_jax.envs.textcraft_synth.suite.TextCraftConfig
  cfg.env.name = "textcraft_synth"
  cfg.env.world = "toy"                  # toy recipes: 1 unit in, 1 out, recipe trees without repeats
  cfg.env.info_style = "compact"         # get_info -> {item: {ingredient: units}}: short observations
  cfg.env.dataset = "toy"                # tfds builder config of the tasks (built in {workdir}/data)
  cfg.env.max_own_crafts = 1             # the delegating expert hands every crafted ingredient to a child
  cfg.env.crafts_per_cell = 2
  cfg.env.transcript_style = "compact"   # no thoughts, one gather per delegation, craft + finish

  cfg.data = ml_collections.ConfigDict()  # settings.DataConfig
  cfg.data.train_difficulties = ("easy", "medium")
  cfg.data.max_train_tasks = 0           # 0: every training task of those difficulties
  cfg.data.split = "train"               # the split RL draws from (the warm start always uses "train")

  cfg.model = ml_collections.ConfigDict(_TINY_MODEL.to_dict())  # ModelConfig

  cfg.tokenizer = ml_collections.ConfigDict()  # warm_start.TokenizerConfig
  cfg.tokenizer.path = ""                # empty: SentencePiece trained in {workdir}/tokenizer
  cfg.tokenizer.vocab_size = 1536
  cfg.tokenizer.corpus_examples = 200
  cfg.tokenizer.transcript_tasks = 48
  cfg.tokenizer.whole_words = True       # each of the world's items is one token (copying = one token)

  cfg.warm_start = ml_collections.ConfigDict()  # settings.WarmStartConfig
  cfg.warm_start.checkpoint = ""         # Hugging Face Qwen3 directory; empty: SFT warm start
  cfg.warm_start.data = ml_collections.ConfigDict()  # sft.SFTDataConfig
  # Mostly flat experts, some delegating ones: a policy that knows the tools and rarely delegates,
  # as the paper's base model; RL has to find out that delegating pays on medium tasks.
  cfg.warm_start.data.recursive_fraction = 0.15
  cfg.warm_start.data.recursive_difficulties = ()  # tiers whose trees may delegate (empty: every tier)
  cfg.warm_start.data.difficulties = ("easy", "medium")
  cfg.warm_start.data.max_tasks_per_difficulty = 0   # 0: every training task of those difficulties
  # Item-renamed copies of every expert tree: names can only be predicted by copying them from the
  # goal and the observations, so the warm start generalises to held-out items.
  cfg.warm_start.data.augmented_copies = 8
  cfg.warm_start.data.keep_originals = True  # also the trees as written (False: renamed copies only)
  cfg.warm_start.sft = ml_collections.ConfigDict()  # sft.SFTConfig
  cfg.warm_start.sft.num_steps = 400
  cfg.warm_start.sft.rows_per_batch = 16
  cfg.warm_start.sft.row_length = 320
  cfg.warm_start.sft.attention_chunk_size = 0  # queries per attention block (0: all at once)
  cfg.warm_start.sft.optimizer = ml_collections.ConfigDict()  # optimizer.OptimizerConfig
  # lr 1e-2 with a cosine decay: copying emerges after ~200 steps and is ~98% right by step 400
  # (lr 3e-3: 86% at step 500; docs/results.md).
  cfg.warm_start.sft.optimizer.learning_rate = 1e-2
  cfg.warm_start.sft.optimizer.weight_decay = 0.0
  cfg.warm_start.sft.optimizer.schedule = "warmup_cosine"
  cfg.warm_start.sft.optimizer.warmup_steps = 20
  cfg.warm_start.sft.optimizer.total_steps = 0   # 0: warm_start.sft.num_steps

  cfg.rollout = ml_collections.ConfigDict()  # rollout.config.RolloutConfig
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
  cfg.rollout.prefill_chunk_buckets = (64, 320)
  cfg.rollout.prefill_row_buckets = (4, 16, 64)
  cfg.rollout.prefill_attention_chunk_size = 0    # queries per attention block in a prefill (0: all)
  cfg.rollout.host_shards = 0  # trees and slots split into this many host shards (0: one per process)
  cfg.rollout.sampling = ml_collections.ConfigDict()  # rollout.sampling.SamplingConfig
  cfg.rollout.sampling.temperature = 1.0  # training samples; evaluation is greedy
  cfg.rollout.sampling.top_p = 1.0

  cfg.interpreter = ml_collections.ConfigDict()  # agent.interpreter.pool.InterpreterConfig
  cfg.interpreter.cell_time_limit_s = 3.0       # CPU seconds per cell; then a TimeoutError observation
  cfg.interpreter.deadline_grace_s = 5.0        # wall seconds more before a silent node is killed
  cfg.interpreter.memory_limit_mb = 1024        # address space of each node's process
  cfg.interpreter.max_running_cells = 0         # node processes running at once (0: eight per core)
  cfg.interpreter.spare_processes = 16          # node processes started ahead of need

  cfg.rl = ml_collections.ConfigDict()   # settings.LoopConfig
  cfg.rl.num_steps = 30
  cfg.rl.tasks_per_step = 8              # B root tasks per step
  cfg.rl.samples_per_task = 8            # G trees per task (the paper's G)

  cfg.policy_update = ml_collections.ConfigDict()  # policy_update.UpdateConfig
  cfg.policy_update.row_length = 320            # packed training rows (= the context window)
  cfg.policy_update.rows_per_micro_batch = 32   # the step accumulates as many micro-batches as the trees need
  cfg.policy_update.advantage = ml_collections.ConfigDict()  # rl.advantages.AdvantageConfig
  cfg.policy_update.advantage.bonus_weight = 0.0  # λ of the delegation bonus (0 for TextCraft-Synth)
  cfg.policy_update.advantage.baseline = "leave_one_out"
  cfg.policy_update.advantage.depth_weighting = "inverse_frequency"
  cfg.policy_update.train_step = ml_collections.ConfigDict()  # train_step.TrainStepConfig
  cfg.policy_update.train_step.loss = "cispo"   # "cispo" | "ppo_clip" | "reinforce"
  cfg.policy_update.train_step.loss_options = (("clip_max", 5.0),)
  cfg.policy_update.train_step.logits_chunk_size = 0
  cfg.policy_update.train_step.attention_chunk_size = 0  # queries per attention block (0: all at once)
  cfg.policy_update.train_step.remat = False    # recompute each layer in the backward pass (activation memory)
  cfg.policy_update.optimizer = ml_collections.ConfigDict()  # optimizer.OptimizerConfig
  # lr 1e-3 flips the policy to delegating as fast but lost the format once (held-out hard 28 -> 11
  # -> 26 of 30 at steps 10, 20, 30); 5e-4 held 28-29 of 30 (docs/results.md).
  cfg.policy_update.optimizer.learning_rate = 5e-4
  cfg.policy_update.optimizer.b1 = 0.9
  cfg.policy_update.optimizer.b2 = 0.95
  cfg.policy_update.optimizer.eps = 1e-8
  cfg.policy_update.optimizer.weight_decay = 0.017
  cfg.policy_update.optimizer.max_grad_norm = 1.0
  cfg.policy_update.optimizer.schedule = "constant"
  cfg.policy_update.optimizer.warmup_steps = 0
  cfg.policy_update.optimizer.total_steps = 0   # 0: rl.num_steps

  cfg.eval = ml_collections.ConfigDict()  # settings.EvalConfig
  cfg.eval.every_steps = 10              # also before the first step and after the last
  cfg.eval.split = "val"
  cfg.eval.difficulties = ("easy", "medium", "hard", "extreme")
  cfg.eval.tasks_per_difficulty = 30

  cfg.checkpoint = ml_collections.ConfigDict()  # settings.CheckpointConfig
  cfg.checkpoint.every_steps = 5
  cfg.checkpoint.max_to_keep = 2

  cfg.log = ml_collections.ConfigDict()  # settings.LogConfig
  cfg.log.tensorboard = True
  cfg.log.train_trees_every = 5          # write the training trees of every k-th step (0: never)
  cfg.log.progress_bar = True

  cfg.mesh = ml_collections.ConfigDict()  # sharding.MeshConfig: (data, fsdp, tensor) sizes, one may be -1
  cfg.mesh.data = -1                     # every device on "data" (each holds the whole train state)
  cfg.mesh.fsdp = 1
  cfg.mesh.tensor = 1
  return cfg


def _qwen3_4b() -> ml_collections.ConfigDict:
  cfg = _tiny()
  cfg.workdir = "workdir/textcraft_qwen3_4b"
  cfg.env.world = "paper"
  cfg.env.info_style = "full"
  cfg.env.dataset = "paper"
  cfg.env.transcript_style = "spec"      # how expert transcripts read (tokenizer identity, optional SFT)
  cfg.env.max_own_crafts = 8
  cfg.env.crafts_per_cell = 1
  cfg.data.train_difficulties = ("medium",)
  cfg.model = ml_collections.ConfigDict(model_config.get_preset("qwen3_4b").to_dict())
  cfg.model.param_dtype = "float32"      # master weights (bfloat16 would round away lr-3e-6 steps)
  cfg.warm_start.checkpoint = ""         # required: --config.warm_start.checkpoint=/path/to/Qwen3-4B
  cfg.tokenizer.path = ""                # empty: the checkpoint's tokenizer
  # The warm-start data and SFT fields matter only for an optional SFT: the imported checkpoint is the
  # starting policy.
  cfg.warm_start.sft.row_length = 8192
  cfg.warm_start.data.augmented_copies = 0
  cfg.warm_start.data.recursive_fraction = 0.5
  cfg.rollout.num_slots = 128
  cfg.rollout.prompt_style = "full"
  cfg.rollout.context_window = 8192
  cfg.rollout.completion_limit = 2048
  cfg.rollout.max_steps_per_node = 25
  cfg.rollout.max_depth = 6
  cfg.rollout.decode_steps_per_round = 256
  cfg.rollout.prefill_chunk_buckets = (256, 1024, 4096)
  # At most 64 rows a prefill: each row reads its slot's whole KV window (1.1 GiB at 8K tokens); 64 rows
  # of 4096 tokens peak at 77.4 GiB a v5p chip (docs/tpu_memory.md).
  cfg.rollout.prefill_row_buckets = (1, 8, 32, 64)
  cfg.rollout.prefill_attention_chunk_size = 512  # [rows, 32, 512, 8192] float32 scores per block
  cfg.rl.num_steps = 540                 # ~10 epochs over the paper's 852 medium tasks
  cfg.rl.tasks_per_step = 16
  cfg.rl.samples_per_task = 8
  cfg.policy_update.row_length = 8192
  cfg.policy_update.rows_per_micro_batch = 16
  cfg.policy_update.train_step.logits_chunk_size = 1024
  cfg.policy_update.train_step.attention_chunk_size = 1024
  cfg.policy_update.train_step.remat = True
  cfg.policy_update.optimizer.learning_rate = 3e-6
  cfg.eval.every_steps = 20
  cfg.eval.difficulties = ("easy", "medium", "hard", "extreme")
  cfg.eval.tasks_per_difficulty = 50
  cfg.checkpoint.every_steps = 10
  cfg.checkpoint.max_to_keep = 3
  cfg.log.train_trees_every = 20
  # Tensor parallelism over the 4 chips of a v5p host (8 KV heads: 2 a chip), hosts on "data". The
  # all-"data" mesh keeps the 45 GiB float32 train state whole on every chip and does not fit
  # (docs/tpu_memory.md: 71.4 GiB peak train step and 87.4 GiB peak 32-row prefill of 95.7 on v5p-8).
  cfg.mesh.data = -1
  cfg.mesh.tensor = 4
  return cfg


def _qwen3_4b_v6e() -> ml_collections.ConfigDict:
  """qwen3_4b sized for v6e (31.25 GiB of HBM a chip): tensor parallelism over a host's 8 chips, half
  the slots, 4 rows a micro-batch, prefills of at most 32 rows (docs/tpu_memory.md)."""
  cfg = _qwen3_4b()
  cfg.workdir = "workdir/textcraft_qwen3_4b_v6e"
  cfg.mesh.tensor = 8
  cfg.rollout.num_slots = 64             # 128 slots' KV cache alone is 18.9 GiB a chip
  cfg.rollout.prefill_row_buckets = (1, 8, 16, 32)  # 32 rows of 4096 peak at 20.7 GiB a chip
  cfg.policy_update.rows_per_micro_batch = 4  # 8 rows: 31.9 GiB peak, over the 31.25
  return cfg


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The training config of `preset` (default "tiny")."""
  name = config_utils.parse_preset(preset, PRESETS, default="tiny")
  cfg = {"qwen3_4b": _qwen3_4b, "qwen3_4b_v6e": _qwen3_4b_v6e}.get(name, _tiny)()
  if name == "tiny_linear":
    cfg.workdir = "workdir/textcraft_tiny_linear"
    cfg.rollout.delegation = False
    cfg.warm_start.data.recursive_fraction = 0.0
  cfg.preset = name
  return cfg
