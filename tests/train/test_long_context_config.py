"""configs/long_context.py: every preset validates, the baseline differs only where it should, and a toy-sized
run of `experiments/train.py` goes end to end (tfds data, tokenizer, SFT, RAO steps, evaluation per bucket)."""
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from rao_jax.envs.long_context.suite import LongContextSuite
from rao_jax.train.settings import settings_from_config

_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "long_context.py")


def _get_config(preset):
  spec = importlib.util.spec_from_file_location("config_long_context", _CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


@pytest.mark.parametrize("preset", ["tiny", "tiny_flat"])
def test_cpu_presets_validate(preset):
  settings = settings_from_config(_get_config(preset))
  assert isinstance(settings.suite(), LongContextSuite)
  assert settings.rollout.delegation == (preset == "tiny")
  assert settings.policy_update.advantage.bonus_weight == 0.4  # the paper's λ for Oolong
  assert settings.policy_update.row_length >= settings.rollout.context_window
  assert settings.eval.difficulties == ("episodes_1", "episodes_2", "episodes_3")


def test_the_baseline_differs_from_the_recursive_preset_only_in_delegation():
  tiny, flat = (settings_from_config(_get_config(p)) for p in ("tiny", "tiny_flat"))
  assert flat.rollout == dataclasses.replace(tiny.rollout, delegation=False)
  assert flat.model == tiny.model and flat.rl == tiny.rl and flat.policy_update == tiny.policy_update
  assert flat.warm_start.data.recursive_fraction == 0.0 < tiny.warm_start.data.recursive_fraction


def test_the_paper_preset_needs_a_checkpoint_and_uses_the_papers_settings():
  cfg = _get_config("qwen3_4b")
  with pytest.raises(ValueError, match="warm_start.checkpoint"):
    settings_from_config(cfg)
  cfg.warm_start.checkpoint = "/models/Qwen3-4B"
  settings = settings_from_config(cfg)
  assert settings.rollout.max_depth == 2 and settings.policy_update.advantage.bonus_weight == 0.4
  assert settings.env.dataset == "paper" and settings.rollout.prompt_style == "full"


@pytest.mark.e2e
def test_a_toy_sized_run_goes_end_to_end(tmp_path):
  command = [sys.executable, "experiments/train.py", "--config", "configs/long_context.py:tiny",
             f"--config.workdir={tmp_path}", "--config.env.dataset=mini", "--config.rl.num_steps=1", "--config.warm_start.sft.num_steps=25",
             "--config.eval.tasks_per_difficulty=1", "--config.eval.every_steps=1", "--config.rl.tasks_per_step=2",
             "--config.rl.samples_per_task=2", "--config.log.progress_bar=False"]
  result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "episodes_3" in result.stdout and "after RL (step 1)" in result.stdout
  with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if r["kind"] == "eval"]
  assert len(evals) == 2 and all(f"success/episodes_{n}" in evals[-1] for n in (1, 2, 3))
  assert {"parallel_fraction", "critical_path_tokens"} <= set(evals[-1])
