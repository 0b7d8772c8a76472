"""scripts/probe_warm_start.py as a user runs it, on the tiny preset shrunk to seconds."""
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

_TOY = ["--config.model.vocab_size=1280", "--config.model.hidden_size=32", "--config.model.num_layers=1",
        "--config.model.num_heads=2", "--config.model.num_kv_heads=1", "--config.model.head_dim=16",
        "--config.model.intermediate_size=64", "--config.tokenizer.vocab_size=1280",
        "--config.tokenizer.corpus_examples=200", "--config.tokenizer.transcript_tasks=3",
        "--config.warm_start.data.difficulties=('easy',)", "--config.warm_start.data.max_tasks_per_difficulty=2",
        "--config.warm_start.data.recursive_fraction=0.0", "--config.warm_start.sft.rows_per_batch=2",
        "--config.warm_start.sft.num_steps=2", "--config.warm_start.sft.optimizer.warmup_steps=0",
        "--num_tasks=2"]
_ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| \d+ s \|$", re.MULTILINE)


def _probe(workdir, *flags):
  command = [sys.executable, "scripts/probe_warm_start.py", "--config", "configs/textcraft.py:tiny",
             f"--config.workdir={workdir}", *_TOY, *flags]
  result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_curve_probes_a_fresh_warm_start_without_saving_it(tmp_path):
  out = _probe(tmp_path, "--curve_every=1")
  rows = _ROW.findall(out)
  assert [int(r[0]) for r in rows] == [0, 1, 2], out
  assert all(0.0 <= float(x) <= 1.0 for r in rows for x in r[1:])
  assert "goal_item (2)" in out  # one goal item per held-out transcript
  assert not os.path.exists(tmp_path / "warm_start")


def test_probe_of_the_runs_warm_start(tmp_path):
  out = _probe(tmp_path)
  kinds = dict(re.findall(r"^\| (\w+) \| (\d+) \| [\d.]+ \|$", out, re.MULTILINE))
  assert list(kinds) == ["goal_item", "later_items", "other"] and kinds["goal_item"] == "2", out
  assert os.listdir(tmp_path / "warm_start")  # built and cached for the run
