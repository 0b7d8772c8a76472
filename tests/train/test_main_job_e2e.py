"""experiments/train_textcraft.py as a user runs it (the README's main job), shrunk to seconds: it prints
the per-tier table with counts, the work directory and the viewer command, and a rerun of a completed
run says there is nothing left to do."""
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

_TOY = ["--config.model.hidden_size=32", "--config.model.num_layers=1", "--config.model.num_heads=2",
        "--config.model.num_kv_heads=1", "--config.model.head_dim=16", "--config.model.intermediate_size=64",
        "--config.tokenizer.corpus_examples=100", "--config.tokenizer.transcript_tasks=2",
        "--config.warm_start.data.max_tasks_per_difficulty=2", "--config.warm_start.data.augmented_copies=0",
        "--config.warm_start.sft.num_steps=2", "--config.warm_start.sft.optimizer.warmup_steps=0",
        "--config.warm_start.sft.rows_per_batch=2", "--config.data.max_train_tasks=4",
        "--config.rl.num_steps=1", "--config.rl.tasks_per_step=1", "--config.rl.samples_per_task=2",
        "--config.policy_update.rows_per_micro_batch=4", "--config.rollout.num_slots=8", "--config.rollout.max_depth=2",
        "--config.rollout.max_steps_per_node=3", "--config.rollout.prefill_row_buckets=(8,)",
        "--config.eval.tasks_per_difficulty=1", "--config.log.progress_bar=False",
        "--config.log.tensorboard=False"]


def _main_job(workdir):
  command = [sys.executable, "experiments/train_textcraft.py", "--config", "configs/textcraft.py:tiny",
             f"--config.workdir={workdir}", *_TOY]
  result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_main_job_prints_the_table_and_a_rerun_has_nothing_left_to_do(tmp_path):
  out = _main_job(tmp_path)
  assert "warm start (step 0)" in out and "after RL (step 1)" in out
  for tier in ("easy", "medium", "hard", "extreme"):
    assert re.search(rf"^{tier} +\d / 1 +\d+% +\d / 1 +\d+% +[+-]\d+ pts$", out, re.MULTILINE), out
  assert f"work directory: {tmp_path}" in out
  assert f"python -m rao_jax.viz --trees {tmp_path}/trees/eval_val_step000001.jsonl" in out
  assert "nothing left to do" not in out
  again = _main_job(tmp_path)
  assert "nothing left to do" in again and again.split("Greedy", 1)[1] == out.split("Greedy", 1)[1]
