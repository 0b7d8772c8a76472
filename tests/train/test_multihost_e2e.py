"""Two processes × 4 simulated CPU devices (jax.distributed, gloo) train like one process × 8 devices.

Both runs use the diagnostic `choice` suite with 2 host shards (so the one-process run schedules its
trees exactly as the two processes do) and the same seed: two RAO steps with a checkpoint, and greedy
evaluations at steps 0 and 2. The one-process run builds the tokenizer and the SFT warm start; the two
processes start from copies of them (each host restores its pieces of the warm start through
Orbax), so both train from the same parameters.

Every rollout is token-identical, so every rollout and evaluation metric is equal. The train step's
gradient all-reduce sums the devices' parts in a different order across processes (gloo between
them, in-process within), so its losses and the parameters agree to float32 rounding only (Adam turns
rounding in near-zero gradients into full-size steps, so parameters are compared on average).
"""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "experiments" / "train.py")
FLAGS = ["--config", str(REPO / "configs" / "diagnostic.py") + ":choice", "--config.rl.num_steps=2",
         "--config.eval.every_steps=2", "--config.eval.tasks_per_difficulty=16",
         "--config.checkpoint.every_steps=2", "--config.rollout.host_shards=2",
         "--config.warm_start.sft.num_steps=30"]
TIMING_SUFFIXES = ("_s", "/slot_utilisation")


def _env(devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _records(workdir: pathlib.Path) -> list[dict]:
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def _params(state_dir: pathlib.Path) -> list[np.ndarray]:
  import jax
  import orbax.checkpoint as ocp
  from jax.sharding import SingleDeviceSharding
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(str(state_dir))
  tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
  device = SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  return [np.asarray(x) for x in jax.tree.leaves(checkpointer.restore(str(state_dir), target)["params"])]


@pytest.mark.e2e
@pytest.mark.multidevice
def test_two_processes_train_like_one_with_eight_devices(tmp_path):
  one, two = tmp_path / "one", tmp_path / "two"
  subprocess.run([sys.executable, TRAIN, *FLAGS, f"--config.workdir={one}"], env=_env(8), cwd=REPO,
                 check=True, timeout=900, capture_output=True)
  two.mkdir()
  for built in ("tokenizer", "warm_start"):  # (this suite's data is generated in memory)
    shutil.copytree(one / built, two / built)
  port = _free_port()
  processes = [subprocess.Popen(
      [sys.executable, TRAIN, *FLAGS, f"--config.workdir={two}", "--multihost",
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={index}"],
      env=_env(4), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for index in range(2)]
  outputs = [p.communicate(timeout=900)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  assert "Greedy held-out success" in outputs[0] and "Greedy held-out success" not in outputs[1]

  reference, records = _records(one), _records(two)
  # One process wrote the log: each record once, the same records in the same order.
  assert [(r["kind"], r["step"]) for r in records] == [(r["kind"], r["step"]) for r in reference]
  assert sum(r["kind"] == "train" for r in records) == 2
  for mine, theirs in zip(records, reference):
    for key, value in theirs.items():
      if key.startswith("time/") or key.endswith(TIMING_SUFFIXES):
        continue
      where = f"{mine['kind']} step {mine['step']} {key}"
      if mine["kind"] == "sft":  # read back from the warm start's loss file (4 decimals)
        assert mine[key] == pytest.approx(value, abs=1e-4), where
      elif mine["kind"] in ("eval", "setup") or key.startswith(("rollout/", "adv/")) or key in (
          "train/micro_batches", "train/updated", "train/pack_fill", "step", "kind"):
        assert mine[key] == value, where  # from token-identical rollouts: exactly equal
      elif key in ("train/loss", "train/grad_norm"):
        assert mine[key] == pytest.approx(value, rel=5e-2, abs=1e-3), where
  assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(one / "checkpoints"))
  assert sorted(os.listdir(two / "trees")) == sorted(os.listdir(one / "trees"))
  for name in os.listdir(one / "trees"):  # the viewer's files: identical trees, rounds and steps too
    assert (two / "trees" / name).read_text() == (one / "trees" / name).read_text(), name

  params, expected = _params(two / "checkpoints" / "2" / "state"), _params(one / "checkpoints" / "2" / "state")
  difference = sum(float(np.abs(a - b).sum()) for a, b in zip(params, expected))
  scale = sum(float(np.abs(b).sum()) for b in expected)
  assert [p.shape for p in params] == [p.shape for p in expected]
  assert difference / scale < 1e-3, difference / scale
