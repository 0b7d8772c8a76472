"""The real trainer (`experiments/train.py` on `configs/diagnostic.py:relay`, shortened to 4 RAO steps with
checkpoints at steps 2 and 4) killed with SIGKILL mid-step and mid-save, and restarted on a damaged latest
checkpoint: each rerun starts from the step it must (printed by the harness from the trainer's own
restore, so a restore that did nothing would start from 0 and fail), runs only the steps after it, and
ends with the uninterrupted run's metrics and train state, bit for bit (same seed, same devices).

Each run is a subprocess under a small harness that instruments the trainer: the kill points, and the
restored step, the steps run and the final train state reported. The runs share a JAX compilation cache,
so only the first (uninterrupted) one compiles; the others take about 10 s each on 2 CPU cores.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from checkpoint_faults import flip_a_bit_in_the_array_data

pytestmark = pytest.mark.e2e

_REPO = os.path.join(os.path.dirname(__file__), "..", "..")
_STEPS = 4
_FLAGS = ("--config", "configs/diagnostic.py:relay", f"--config.rl.num_steps={_STEPS}",
          "--config.checkpoint.every_steps=2", "--config.checkpoint.max_to_keep=2",
          "--config.eval.every_steps=100", "--config.eval.tasks_per_difficulty=8",
          "--config.policy_update.rows_per_micro_batch=64")  # one micro-batch a step: one train-step compile
_BUILT_PARTS = ("tokenizer", "warm_start")

# KILL="train_batch:N": SIGKILL in step N after its rollouts, before its update (the previous save
# complete); KILL="save:N": SIGKILL once step N's items are written, before Orbax commits the step.
_HARNESS = textwrap.dedent("""
    import os, runpy, signal, sys
    import jax, numpy as np
    from orbax.checkpoint._src.path import atomicity
    from rao_jax.train import trainer

    what, _, at = os.environ.get("KILL", "").partition(":")

    def die():
      sys.stdout.flush()
      os.kill(os.getpid(), signal.SIGKILL)

    real_train_batch = trainer.Trainer.train_batch
    def train_batch(self, trees):
      if what == "train_batch" and self.step == int(at):
        self.checkpoints.wait()
        die()
      return real_train_batch(self, trees)

    real_rl_step = trainer.Trainer.rl_step
    def rl_step(self):
      print("RAN_STEP", self.step, flush=True)
      return real_rl_step(self)

    real_finalize = atomicity.AtomicRenameTemporaryPath.finalize
    async def finalize(self, *args, **kwargs):
      if what == "save" and self._final_path.name == at:
        die()
      return await real_finalize(self, *args, **kwargs)

    real_restore = trainer.Trainer.restore
    def restore(self, step=None):
      restored = real_restore(self, step)
      print("RESTORED", self.step if restored else "nothing", flush=True)
      return restored

    real_close = trainer.Trainer.close
    def close(self):
      leaves = [np.asarray(x) for x in jax.tree.leaves(self.state)]
      np.savez(os.path.join(self.settings.workdir, "final_state.npz"), *leaves)
      real_close(self)

    trainer.Trainer.train_batch, trainer.Trainer.rl_step, trainer.Trainer.restore = train_batch, rl_step, restore
    trainer.Trainer.close, atomicity.AtomicRenameTemporaryPath.finalize = close, finalize
    sys.argv = ["experiments/train.py", *sys.argv[1:]]
    try:
      runpy.run_path("experiments/train.py", run_name="__main__")
    finally:
      if what:
        print("KILL POINT NOT REACHED:", what, at, flush=True)
""")


def _run(workdir, cache, kill: str = "") -> subprocess.CompletedProcess:
  env = {**os.environ, "KILL": kill, "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
  return subprocess.run([sys.executable, "-c", _HARNESS, *_FLAGS, f"--config.workdir={workdir}"], cwd=_REPO,
                        env=env, capture_output=True, text=True, timeout=300, check=False)


def _output(result: subprocess.CompletedProcess) -> str:
  return f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"


def _restored_and_ran(result: subprocess.CompletedProcess) -> tuple[str, list[int]]:
  lines = result.stdout.splitlines()
  (restored,) = [line.split()[1] for line in lines if line.startswith("RESTORED ")]
  return restored, [int(line.split()[1]) for line in lines if line.startswith("RAN_STEP ")]


def _records(workdir) -> list[dict]:
  """The RL records of metrics.jsonl without wall-clock times."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if not k.startswith(("time/", "rollout/time/"))}
          for r in records if r["kind"] in ("train", "eval")]


def _final_state(workdir) -> list[np.ndarray]:
  with np.load(os.path.join(workdir, "final_state.npz")) as saved:
    return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _assert_reproduces(workdir, uninterrupted) -> None:
  assert _records(workdir) == _records(uninterrupted)
  resumed, full = _final_state(workdir), _final_state(uninterrupted)
  assert len(resumed) == len(full)
  for a, b in zip(resumed, full):
    np.testing.assert_array_equal(a, b)


def _fresh_copy(uninterrupted, workdir) -> None:
  """A work directory holding only the uninterrupted run's tokenizer and warm start."""
  for part in _BUILT_PARTS:
    shutil.copytree(os.path.join(uninterrupted, part), os.path.join(workdir, part))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """(work directory, compilation cache) of the uninterrupted run."""
  workdir, cache = tmp_path_factory.mktemp("uninterrupted"), tmp_path_factory.mktemp("jax_cache")
  result = _run(workdir, cache)
  assert result.returncode == 0, _output(result)
  assert _restored_and_ran(result) == ("nothing", list(range(_STEPS)))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  records = _records(workdir)
  assert [(r["step"], r["kind"]) for r in records] == [(0, "eval"), (0, "train"), (1, "train"), (2, "train"),
                                                       (3, "train"), (4, "eval")]
  # Steps after the resume point update the policy, so a rerun that restored the wrong parameters or
  # optimiser state could not end with the same state.
  assert any(r["train/updated"] for r in records if r["kind"] == "train" and r["step"] >= 2), records
  return workdir, cache


def test_killed_mid_step_resumes_from_the_last_checkpoint(uninterrupted, tmp_path):
  full, cache = uninterrupted
  _fresh_copy(full, tmp_path)
  killed = _run(tmp_path, cache, kill="train_batch:3")
  assert killed.returncode == -9, _output(killed)
  assert _restored_and_ran(killed) == ("nothing", [0, 1, 2, 3])
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  rerun = _run(tmp_path, cache)
  assert rerun.returncode == 0, _output(rerun)
  assert _restored_and_ran(rerun) == ("2", [2, 3])
  _assert_reproduces(tmp_path, full)


def test_killed_mid_save_resumes_from_the_previous_checkpoint(uninterrupted, tmp_path):
  full, cache = uninterrupted
  _fresh_copy(full, tmp_path)
  killed = _run(tmp_path, cache, kill=f"save:{_STEPS}")
  assert killed.returncode == -9, _output(killed)
  left = sorted(os.listdir(tmp_path / "checkpoints"))
  assert left[0] == "2" and len(left) == 2 and left[1].startswith(f"{_STEPS}.orbax-checkpoint-tmp"), left
  rerun = _run(tmp_path, cache)
  assert rerun.returncode == 0, _output(rerun)
  assert _restored_and_ran(rerun) == ("2", [2, 3])
  assert "2" in os.listdir(tmp_path / "checkpoints") and str(_STEPS) in os.listdir(tmp_path / "checkpoints")
  _assert_reproduces(tmp_path, full)


def test_a_damaged_latest_checkpoint_falls_back_visibly(uninterrupted, tmp_path):
  full, cache = uninterrupted
  workdir = tmp_path / "run"
  shutil.copytree(full, workdir)  # the finished run, checkpoints 2 and 4 included
  flip_a_bit_in_the_array_data(workdir / "checkpoints" / str(_STEPS), mask=0x01)
  rerun = _run(workdir, cache)
  assert rerun.returncode == 0, _output(rerun)
  assert f"checkpoints/{_STEPS} is corrupt: arrays " in rerun.stderr
  assert "do not match the checksums written when it was saved" in rerun.stderr
  assert "resuming from the previous checkpoint that verifies, step 2" in rerun.stderr
  assert _restored_and_ran(rerun) == ("2", [2, 3])
  # The damaged step is kept aside, and the rerun saved its step again beside it.
  checkpoints = workdir / "checkpoints"
  assert sorted(os.listdir(checkpoints)) == ["2", str(_STEPS), "damaged"]
  assert os.path.isdir(checkpoints / "damaged" / str(_STEPS) / "state")
  _assert_reproduces(workdir, full)
