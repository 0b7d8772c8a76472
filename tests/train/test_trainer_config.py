"""configs/textcraft.py: every preset validates; bad values fail before anything is built, naming the field."""
import importlib.util
import os

import pytest

from rao_jax.train.settings import settings_from_config

_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "textcraft.py")


def _get_config(preset):
  spec = importlib.util.spec_from_file_location("textcraft_config", _CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


@pytest.mark.parametrize("preset", ["tiny", "tiny_linear"])
def test_cpu_presets_validate(preset):
  settings = settings_from_config(_get_config(preset))
  assert settings.rollout.delegation == (preset == "tiny")
  assert settings.interpreter.delegation == settings.rollout.delegation
  assert settings.interpreter.max_depth == settings.rollout.max_depth
  assert settings.greedy_rollout.sampling.greedy and not settings.rollout.sampling.greedy
  assert settings.update.row_length >= settings.rollout.context_window


def test_linear_preset_differs_only_in_delegation():
  tiny, linear = settings_from_config(_get_config("tiny")), settings_from_config(_get_config("tiny_linear"))
  assert tiny.rollout.max_steps_per_node == linear.rollout.max_steps_per_node
  assert tiny.rollout.context_window == linear.rollout.context_window
  assert tiny.update == linear.update and tiny.model == linear.model
  assert tiny.sft == linear.sft and tiny.num_steps == linear.num_steps
  assert tiny.sft_data.recursive_fraction > 0 and linear.sft_data.recursive_fraction == 0


def test_qwen3_4b_preset_has_the_paper_hyper_parameters():
  cfg = _get_config("qwen3_4b")
  cfg.model.checkpoint = "/models/Qwen3-4B"
  s = settings_from_config(cfg)
  assert (s.tasks_per_step, s.samples_per_task) == (16, 8)
  assert s.update.train_step.loss == "cispo" and dict(s.update.train_step.loss_options) == {"clip_max": 5.0}
  opt = s.update.optimizer
  assert (opt.learning_rate, opt.b1, opt.b2, opt.eps, opt.weight_decay, opt.max_grad_norm, opt.schedule) == (
      3e-6, 0.9, 0.95, 1e-8, 0.017, 1.0, "constant")
  assert s.rollout.context_window == 8192 and s.rollout.max_steps_per_node == 25 and s.rollout.max_depth == 6
  assert s.rollout.sampling.temperature == 1.0
  assert s.update.advantage.bonus_weight == 0.0 and s.update.advantage.depth_weighting == "inverse_frequency"
  assert s.num_steps == 540 and s.train_difficulties == ("medium",)
  assert s.model.hidden_size == 2560 and s.model.num_layers == 36
  assert (s.model.param_dtype, s.model.dtype) == ("float32", "bfloat16")  # master weights, bf16 compute
  assert s.update.train_step.remat and s.update.train_step.attention_chunk_size == 1024  # 8K rows fit
  assert s.env_config == {"world": "paper", "info_style": "full"} and s.sft_data.transcript_style == "spec"
  assert s.rollout.prefill_attention_chunk_size == 512


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_master_weights_are_rejected(dtype):
  cfg = _get_config("tiny")
  cfg.model.param_dtype = dtype
  with pytest.raises(ValueError, match=rf"config.model.param_dtype='{dtype}'.*rounds away.*param_dtype='float32'"):
    settings_from_config(cfg)


def test_qwen3_4b_needs_a_checkpoint():
  with pytest.raises(ValueError, match="config.model.checkpoint is required"):
    settings_from_config(_get_config("qwen3_4b"))


def test_unknown_preset():
  with pytest.raises(ValueError, match="unknown preset 'huge'"):
    _get_config("huge")


@pytest.mark.parametrize("section, field, value, message", [
    ("rollout", "num_slots", 0, r"config\.rollout\.num_slots=0"),
    ("rollout", "completion_limit", 4096, r"config\.rollout\.completion_limit=4096"),
    ("rollout", "temperature", -1.0, r"config\.rollout\.temperature"),
    ("rollout", "prompt_style", "chatty", r"config\.rollout\.prompt_style='chatty'"),
    ("rollout", "prefill_attention_chunk_size", -2, r"config\.rollout\.prefill_attention_chunk_size=-2"),
    ("optimizer", "learning_rate", -1.0, r"config\.optimizer\.learning_rate"),
    ("optimizer", "schedule", "cubic", r"config\.optimizer\.schedule"),
    ("rl", "depth_weighting", "deep", r"config\.rl\.depth_weighting"),
    ("rl", "loss", "dpo", r"config\.rl\.loss='dpo'"),
    ("rl", "samples_per_task", 1, r"config\.rl\.samples_per_task=1"),
    ("rl", "row_length", 128, r"config\.rl\.row_length=128"),
    ("rl", "tasks_per_step", 0, r"config\.rl\.tasks_per_step=0"),
    ("rl", "attention_chunk_size", -1, r"config\.rl\.attention_chunk_size=-1"),
    ("warm_start", "attention_chunk_size", -8, r"config\.warm_start\.attention_chunk_size=-8"),
    ("model", "num_heads", 3, r"config\.model\.num_heads"),
    ("warm_start", "recursive_fraction", 1.5, r"config\.warm_start\.recursive_fraction=1\.5"),
    ("warm_start", "schedule", "cubic", r"config\.warm_start\.schedule='cubic'"),
    ("warm_start", "transcript_style", "chatty", r"config\.warm_start\.transcript_style='chatty'"),
    ("env", "info_style", "verbose", r"config\.env\.info_style='verbose'"),
    ("interpreter", "num_workers", 0, r"config\.interpreter.*num_workers"),
    ("eval", "split", "test", r"config\.eval\.split='test'"),
    ("eval", "difficulties", ("easy", "impossible"), r"config\.eval\.difficulties"),
    ("data", "train_difficulties", (), r"config\.data\.train_difficulties"),
    ("env", "world", "mars", r"config\.env\.world='mars'"),
    ("tokenizer", "vocab_size", 5000, r"config\.tokenizer\.vocab_size=5000 exceeds config\.model\.vocab_size"),
])
def test_bad_values_name_the_field(section, field, value, message):
  cfg = _get_config("tiny")
  cfg[section][field] = value
  with pytest.raises(ValueError, match=message):
    settings_from_config(cfg)


def test_linear_preset_rejects_delegating_warm_start():
  cfg = _get_config("tiny_linear")
  cfg.warm_start.recursive_fraction = 0.5
  with pytest.raises(ValueError, match="config.warm_start.*delegation"):
    settings_from_config(cfg)
