"""End-to-end at toy size on the qwen3_4b preset's path: the starting policy is an imported Hugging Face
Qwen3 directory (safetensors in bfloat16, config.json, tokenizer.json), trained with float32 master
weights and bfloat16 compute; ChatML layout, full prompts, no tokenizer training and no SFT warm start."""
import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.agent.chat import Qwen3ChatLayout
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs.textcraft_synth.suite import TextCraftConfig, TextCraftSuite
from rao_jax.envs.textcraft_synth.tasks import TaskConfig, build_splits
from rao_jax.envs.textcraft_synth.world import get_world
from rao_jax.model import hf_checkpoint
from rao_jax.model.config import get_preset
from rao_jax.model.random_init import random_normal_model
from rao_jax.tokenizer import HFTokenizer
from rao_jax.train import policy_update, trainer, warm_start
from rao_jax.train.checkpoint import Checkpoints
from rao_jax.train.metrics_log import read_records
from rao_jax.train.settings import settings_from_config

pytestmark = pytest.mark.e2e

_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "textcraft.py")
_TOY_SHAPE = dict(vocab_size=1024, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16,
                  intermediate_size=64)


def _qwen3_4b_config():
  spec = importlib.util.spec_from_file_location("textcraft_config", _CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("qwen3_4b")


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, build_qwen_like_tokenizer_json):
  """A Qwen3-layout directory: a random toy model saved in bfloat16 and a BPE tokenizer with Qwen's specials
  (trained on expert transcripts in the full prompt style, so that prompts stay short)."""
  directory = tmp_path_factory.mktemp("qwen3_toy")
  world = get_world("small")
  tasks = build_splits(world, TaskConfig(num_train=8, num_val=0, mix=(1.0, 0.0, 0.0, 0.0)))["train"]
  suite = TextCraftSuite(TextCraftConfig(world="small", dataset="small"))
  fmt = EpisodeFormat(delegation=True, max_depth=6, max_steps_per_node=3, context_window=4096, prompt_style="full")
  texts = warm_start.transcript_texts(suite, tasks, fmt)
  build_qwen_like_tokenizer_json(directory, vocab_size=_TOY_SHAPE["vocab_size"] - 24, extra_texts=texts,
                                 tokenizer_config={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
  stored = dataclasses.replace(get_preset("qwen3_4b"), **_TOY_SHAPE)  # bfloat16, tied, RoPE theta 1e6
  hf_checkpoint.save_hf_checkpoint(random_normal_model(stored, seed=3), stored, directory)
  return str(directory)


def _toy_settings(workdir, checkpoint):
  cfg = _qwen3_4b_config()
  cfg.workdir = str(workdir)
  cfg.env.update(world="small", dataset="small")
  cfg.data.update(train_difficulties=("easy",), max_train_tasks=2)
  cfg.model.update(**_TOY_SHAPE)
  cfg.warm_start.checkpoint = checkpoint
  cfg.rollout.update(num_slots=4, context_window=4096, completion_limit=16, max_steps_per_node=3, max_depth=1,
                     decode_steps_per_round=16, prefill_chunk_buckets=(512, 4096), prefill_row_buckets=(4,))
  cfg.rl.update(num_steps=1, tasks_per_step=1, samples_per_task=2)
  cfg.policy_update.update(row_length=4096, rows_per_micro_batch=2)
  cfg.eval.update(every_steps=1, difficulties=("easy",), tasks_per_difficulty=1)
  cfg.checkpoint.every_steps = 1
  cfg.log.update(progress_bar=False, train_trees_every=1)
  cfg.mesh.update(data=-1, fsdp=1, tensor=1)  # the preset's tensor-parallel mesh is a TPU slice's
  return settings_from_config(cfg)


def test_imported_checkpoint_is_the_starting_policy_and_trains(checkpoint_dir, tmp_path, monkeypatch,
                                                                stand_in_advantages):
  monkeypatch.setattr(policy_update, "advantages_from_trees", stand_in_advantages)
  settings = _toy_settings(tmp_path, checkpoint_dir)
  run = trainer.build_run(settings)
  assert isinstance(run.tokenizer, HFTokenizer) and isinstance(run.layout, Qwen3ChatLayout)
  assert not os.path.exists(tmp_path / "warm_start") and not os.path.exists(tmp_path / "tokenizer")

  # The bfloat16 checkpoint becomes float32 master weights holding exactly its values.
  imported, _ = hf_checkpoint.load_hf_checkpoint(checkpoint_dir)
  start = jax.tree.leaves(nnx.state(run.initial_policy))
  assert all(leaf.dtype == jnp.float32 for leaf in start)
  for ours, theirs in zip(start, jax.tree.leaves(nnx.state(imported))):
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs, np.float32))
  start = [np.asarray(leaf) for leaf in start]

  with trainer.Trainer(run) as loop:
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(loop.engine.params))
    loop.train()
    final = [np.asarray(leaf) for leaf in jax.tree.leaves(loop.state.params)]

  records = read_records(str(tmp_path / "metrics.jsonl"))
  assert [(r["step"], r["kind"]) for r in records] == [(0, "setup"), (0, "eval"), (0, "train"), (1, "eval")]
  (train,) = [r for r in records if r["kind"] == "train"]
  assert train["train/updated"] == 1.0 and np.isfinite(train["train/loss"])
  # Sampler (bfloat16 KV cache, one token at a time) and trainer (packed rows) agree to bfloat16 precision.
  assert abs(train["train/log_prob_gap_mean"]) < 0.05, train
  # lr 3e-6 moves the float32 master weights (it would round away in bfloat16 storage).
  moved = sum(int((a != b).sum()) for a, b in zip(start, final)) / sum(a.size for a in start)
  assert moved > 0.5
  assert Checkpoints(str(tmp_path / "checkpoints"), run.identity).latest_step() == 1
  assert os.path.isfile(tmp_path / "trees" / "eval_val_step000001.jsonl")


def test_checkpoint_of_another_shape_is_refused_naming_the_fields(checkpoint_dir):
  wanted = dataclasses.replace(get_preset("qwen3_4b"), **dict(_TOY_SHAPE, hidden_size=64, num_layers=2))
  with pytest.raises(ValueError, match=r"does not match config.model: hidden_size: checkpoint 32 vs config 64, "
                                       r"num_layers: checkpoint 1 vs config 2"):
    warm_start.imported_model(checkpoint_dir, wanted)
