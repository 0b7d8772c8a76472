"""Config of `experiments/train.py` on chained multi-hop research (the DeepDive stand-in).

  python experiments/train.py --config configs/chained_research.py:tiny
  python experiments/train.py --config configs/chained_research.py:tiny_flat      # delegation off
  python experiments/train.py --config configs/chained_research.py:qwen3_4b \
      --config.warm_start.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=gs://bucket/run1

Presets:
  tiny:      CPU. TextCraft's tiny recipe on the "tiny" corpus (~135 entities a graph): the 0.6M-parameter
             model, SFT on expert transcripts (minimal prompts, compact search results, every name word a
             single token, entity-renamed copies), mostly flat experts and 15% delegating ones, then RAO on
             2- and 3-hop questions; greedy eval on 2- to 6-hop ones. The 448-token window holds every node
             of a recursive solution of any length but a flat solution only up to 3 hops
             (docs/chained_research.md has the table), which is what RL can learn to exploit.
             Measured: its warm start solves no held-out task yet, so RL has no signal (docs/results.md).
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
from rao_jax.model import config as model_config

PRESETS = ("tiny", "tiny_flat", "qwen3_4b")

# configs/textcraft.py's tiny model: the Qwen3 block at 2 layers × 128 wide, a 1536-piece vocabulary
# (here: the 480 name-pool words and 8 countries as single pieces, 256 bytes, chat markers, learned pieces).
_TINY_MODEL = model_config.ModelConfig(vocab_size=1536, hidden_size=128, num_layers=2, num_heads=4,
                                       num_kv_heads=2, head_dim=32, intermediate_size=384,
                                       rope_theta=10_000.0, tie_embeddings=True)
_TRAIN = ("2hop", "3hop")
_ALL = ("2hop", "3hop", "4hop", "5hop", "6hop")


def _tiny() -> ml_collections.ConfigDict:
  """The CPU preset (budget: warm start + RL + evals in about 15 minutes on 2 cores)."""
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.workdir = "workdir/chained_research_tiny"

  cfg.env = ml_collections.ConfigDict()  # rao_jax.envs.chained_research.suite.ChainedResearchConfig
  cfg.env.name = "chained_research"
  cfg.env.dataset = "tiny"               # graph, pages (1 distractor), snippets <= 120 chars, 120 / 20 questions a tier
  cfg.env.result_style = "compact"       # search_web -> ["title: snippet", ...]: short observations
  cfg.env.transcript_style = "compact"   # no thoughts, one cell a lookup, no page reads
  cfg.env.expert_max_results = 2         # the expert sees the top two results (the runner-up is often a twin)

  cfg.data = ml_collections.ConfigDict()  # settings.DataConfig
  cfg.data.train_difficulties = _TRAIN
  cfg.data.max_train_tasks = 0

  cfg.model = ml_collections.ConfigDict(_TINY_MODEL.to_dict())  # ModelConfig

  cfg.tokenizer = ml_collections.ConfigDict()  # warm_start.TokenizerConfig
  cfg.tokenizer.path = ""                # empty: SentencePiece trained in {workdir}/tokenizer
  cfg.tokenizer.vocab_size = 1536
  cfg.tokenizer.corpus_examples = 200
  cfg.tokenizer.transcript_tasks = 48
  cfg.tokenizer.whole_words = True       # every name word is one token (copying a name = copying 1-2 tokens)

  cfg.warm_start = ml_collections.ConfigDict()  # settings.WarmStartConfig
  cfg.warm_start.checkpoint = ""
  cfg.warm_start.data = ml_collections.ConfigDict()  # sft.SFTDataConfig
  # Mostly flat experts and some delegating ones, as on TextCraft: a policy that knows the tools and
  # rarely delegates; RL has to find out that delegating keeps every node inside the window.
  cfg.warm_start.data.recursive_fraction = 0.15
  cfg.warm_start.data.difficulties = _TRAIN
  cfg.warm_start.data.max_tasks_per_difficulty = 0
  # Entity-renamed copies: a name can only be predicted by copying it from the goal or a result.
  cfg.warm_start.data.augmented_copies = 4
  cfg.warm_start.sft = ml_collections.ConfigDict()  # sft.SFTConfig
  cfg.warm_start.sft.num_steps = 400
  cfg.warm_start.sft.rows_per_batch = 12  # 12 × 448 tokens: about TextCraft tiny's 16 × 320 a step
  cfg.warm_start.sft.row_length = 448
  cfg.warm_start.sft.attention_chunk_size = 0
  cfg.warm_start.sft.optimizer = ml_collections.ConfigDict()  # optimizer.OptimizerConfig
  cfg.warm_start.sft.optimizer.learning_rate = 1e-2
  cfg.warm_start.sft.optimizer.weight_decay = 0.0
  cfg.warm_start.sft.optimizer.schedule = "warmup_cosine"
  cfg.warm_start.sft.optimizer.warmup_steps = 20
  cfg.warm_start.sft.optimizer.total_steps = 0

  cfg.rollout = ml_collections.ConfigDict()  # rollout.config.RolloutConfig
  cfg.rollout.num_slots = 64
  cfg.rollout.context_window = 448
  cfg.rollout.completion_limit = 48      # the longest expert cell is ~30 tokens
  cfg.rollout.max_steps_per_node = 12    # a flat 6-hop solution takes 9 cells
  cfg.rollout.max_depth = 4              # DeepDive's depth cap (the experts use depth 1)
  cfg.rollout.delegation = True
  cfg.rollout.prompt_style = "minimal"
  cfg.rollout.decode_steps_per_round = 48
  cfg.rollout.prefill_chunk_buckets = (64, 448)
  cfg.rollout.prefill_row_buckets = (4, 16, 64)
  cfg.rollout.prefill_attention_chunk_size = 0
  cfg.rollout.host_shards = 0
  cfg.rollout.sampling = ml_collections.ConfigDict()  # rollout.sampling.SamplingConfig
  cfg.rollout.sampling.temperature = 1.0
  cfg.rollout.sampling.top_p = 1.0

  cfg.interpreter = ml_collections.ConfigDict()  # agent.interpreter.pool.InterpreterConfig
  cfg.interpreter.cell_time_limit_s = 3.0
  cfg.interpreter.deadline_grace_s = 5.0
  cfg.interpreter.memory_limit_mb = 1024
  cfg.interpreter.max_running_cells = 0
  cfg.interpreter.spare_processes = 16

  cfg.rl = ml_collections.ConfigDict()   # settings.LoopConfig
  cfg.rl.num_steps = 30
  cfg.rl.tasks_per_step = 8
  cfg.rl.samples_per_task = 8

  cfg.policy_update = ml_collections.ConfigDict()  # policy_update.UpdateConfig
  cfg.policy_update.row_length = 448
  cfg.policy_update.rows_per_micro_batch = 32
  cfg.policy_update.advantage = ml_collections.ConfigDict()  # rl.advantages.AdvantageConfig
  cfg.policy_update.advantage.bonus_weight = 0.0  # λ = 0 on DeepDive
  cfg.policy_update.advantage.baseline = "leave_one_out"
  cfg.policy_update.advantage.depth_weighting = "inverse_frequency"
  cfg.policy_update.train_step = ml_collections.ConfigDict()  # train_step.TrainStepConfig
  cfg.policy_update.train_step.loss = "cispo"
  cfg.policy_update.train_step.loss_options = (("clip_max", 5.0),)
  cfg.policy_update.train_step.logits_chunk_size = 0
  cfg.policy_update.train_step.attention_chunk_size = 0
  cfg.policy_update.train_step.remat = False
  cfg.policy_update.optimizer = ml_collections.ConfigDict()  # optimizer.OptimizerConfig
  cfg.policy_update.optimizer.learning_rate = 5e-4
  cfg.policy_update.optimizer.b1 = 0.9
  cfg.policy_update.optimizer.b2 = 0.95
  cfg.policy_update.optimizer.eps = 1e-8
  cfg.policy_update.optimizer.weight_decay = 0.017
  cfg.policy_update.optimizer.max_grad_norm = 1.0
  cfg.policy_update.optimizer.schedule = "constant"
  cfg.policy_update.optimizer.warmup_steps = 0
  cfg.policy_update.optimizer.total_steps = 0

  cfg.eval = ml_collections.ConfigDict()  # settings.EvalConfig
  cfg.eval.every_steps = 10
  cfg.eval.split = "val"
  cfg.eval.difficulties = _ALL
  cfg.eval.tasks_per_difficulty = 20     # the whole val split

  cfg.checkpoint = ml_collections.ConfigDict()  # settings.CheckpointConfig
  cfg.checkpoint.every_steps = 5
  cfg.checkpoint.max_to_keep = 2

  cfg.log = ml_collections.ConfigDict()  # settings.LogConfig
  cfg.log.tensorboard = True
  cfg.log.train_trees_every = 5
  cfg.log.progress_bar = True

  cfg.mesh = ml_collections.ConfigDict()  # sharding.MeshConfig
  cfg.mesh.data = -1
  cfg.mesh.fsdp = 1
  cfg.mesh.tensor = 1
  return cfg


def _qwen3_4b() -> ml_collections.ConfigDict:
  """The paper's DeepDive settings (RAO_METHOD.md, section 2 and 5) on an imported Qwen3-4B."""
  cfg = _tiny()
  cfg.workdir = "workdir/chained_research_qwen3_4b"
  cfg.env.dataset = "paper"
  cfg.env.result_style = "full"          # search_web -> [{url, title, content, score}, ...]
  cfg.env.transcript_style = "spec"      # thoughts, 5 results, the top page read (tokenizer identity, optional SFT)
  cfg.data.train_difficulties = ("3hop", "4hop")
  cfg.model = ml_collections.ConfigDict(model_config.get_preset("qwen3_4b").to_dict())
  cfg.model.param_dtype = "float32"
  cfg.warm_start.checkpoint = ""         # required: --config.warm_start.checkpoint=/path/to/Qwen3-4B
  cfg.tokenizer.path = ""
  cfg.warm_start.data.difficulties = ("3hop", "4hop")
  cfg.warm_start.data.augmented_copies = 0
  cfg.warm_start.data.recursive_fraction = 0.5
  cfg.warm_start.sft.row_length = 8192
  cfg.rollout.num_slots = 128
  cfg.rollout.prompt_style = "full"
  cfg.rollout.context_window = 8192
  cfg.rollout.completion_limit = 2048    # DeepDive's completion tokens per turn
  cfg.rollout.max_steps_per_node = 25
  cfg.rollout.max_depth = 4
  cfg.rollout.decode_steps_per_round = 256
  cfg.rollout.prefill_chunk_buckets = (256, 1024, 4096)
  cfg.rollout.prefill_row_buckets = (1, 8, 32, 64)
  cfg.rollout.prefill_attention_chunk_size = 512
  cfg.rl.num_steps = 540
  cfg.rl.tasks_per_step = 16
  cfg.rl.samples_per_task = 8
  cfg.policy_update.row_length = 8192
  cfg.policy_update.rows_per_micro_batch = 16
  cfg.policy_update.train_step.logits_chunk_size = 1024
  cfg.policy_update.train_step.attention_chunk_size = 1024
  cfg.policy_update.train_step.remat = True
  cfg.policy_update.optimizer.learning_rate = 3e-6
  cfg.eval.every_steps = 20
  cfg.eval.difficulties = _ALL
  cfg.eval.tasks_per_difficulty = 50     # DeepDive's 50 held-out tasks, per tier here
  cfg.checkpoint.every_steps = 10
  cfg.checkpoint.max_to_keep = 3
  cfg.log.train_trees_every = 20
  cfg.mesh.data = -1
  cfg.mesh.tensor = 4
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
