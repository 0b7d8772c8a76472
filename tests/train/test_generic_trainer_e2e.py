"""The generic trainer on a suite defined in one module plus one config: `experiments/train.py` on
`configs/diagnostic.py:relay` (a root that can only delegate, whose success is its child's work), as a
user runs it. Reward rises from the guessing warm start, so the root learns what to delegate through its
own advantage, and the run's set-up (phase times, the SFT loss curve) is in metrics.jsonl. (The
`choice` preset learns the same way: 0 → 64 of 64 in 24 s, docs/results.md.)"""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_a_one_file_suite_learns_with_the_generic_trainer(tmp_path):
  command = [sys.executable, "experiments/train.py", "--config", "configs/diagnostic.py:relay",
             f"--config.workdir={tmp_path}"]
  result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "warm start (step 0)" in result.stdout and "after RL (step 24)" in result.stdout
  with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  evals = [r["success"] for r in records if r["kind"] == "eval"]
  train = [r["rollout/success"] for r in records if r["kind"] == "train"]
  assert evals[0] <= 0.5 and evals[-1] >= 0.9, (evals, train)  # greedy held-out success
  assert sum(train[:4]) / 4 < 0.5 < sum(train[-4:]) / 4, train  # sampled training success
  (setup,) = [r for r in records if r["kind"] == "setup"]
  assert {"time/data_s", "time/tokenizer_s", "time/warm_start_s"} <= set(setup)
  losses = [r["loss"] for r in records if r["kind"] == "sft"]
  assert len(losses) == 120 and losses[-1] < losses[0]
