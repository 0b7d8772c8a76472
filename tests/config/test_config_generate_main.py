"""`experiments/generate.py`: a trained policy from a training work directory (latest checkpoint, else the
warm start, with the run's tokenizer), end to end at toy size, config errors, tokenizer caching."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from rao_jax import sharding
from rao_jax import tokenizer as tokenizer_lib
from rao_jax.model.config import ModelConfig
from rao_jax.model.random_init import random_normal_model
from rao_jax.rollout.generate import generate
from rao_jax.train import warm_start
from rao_jax.train.checkpoint import Checkpoints, Progress, RunIdentity, tokenizer_fingerprint
from rao_jax.train.train_step import create_train_state

# ml_collections loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

SCRIPT = "experiments/generate.py"
# A one-layer model keeps compilation short; the rest of the tiny preset is kept.
SMALL_MODEL = ["--config.model.num_layers=1", "--config.model.hidden_size=64",
               "--config.model.intermediate_size=128", "--config.model.head_dim=16"]
PROMPTS = ["Craft 2 plank", "<thought>"]


def _load(name: str, path: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


generate_main = _load("generate_main", SCRIPT)


def load_config(preset: str = "tiny", **overrides):
  cfg = _load("generate_config", "configs/generate.py").get_config(preset)
  cfg.update(overrides)
  return cfg


def run_cli(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, check=False,
                        timeout=240, env=env)


# ------------------------------------------------------------------ a training work directory


def _save_checkpoint(workdir, model, identity, step):
  _, state = create_train_state(model, optax.adam(1e-3), sharding.make_mesh())
  checkpoints = Checkpoints(str(workdir / "checkpoints"), identity)
  checkpoints.save(state, Progress(step=step, data_position=step,
                                   rng_key_data=np.asarray(jax.random.key_data(jax.random.key(0)))))
  checkpoints.close()


def _save_warm_start(workdir, model, identity):
  """As `warm_start.sft_warm_start` leaves it: the identity record, then the model's state."""
  path = workdir / "warm_start" / "0123456789abcdef"
  path.mkdir(parents=True)
  (path / warm_start.IDENTITY_FILE).write_text(json.dumps(
      {"model_config": identity.model_config, "tokenizer_fingerprint": identity.tokenizer_fingerprint}))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(str(path / "params"), nnx.state(model))
  checkpointer.wait_until_finished()


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
  """Two toy tokenizers: the run's, and another one."""
  cache = tmp_path_factory.mktemp("tokenizers")
  return generate_main.toy_tokenizer(str(cache), 600), generate_main.toy_tokenizer(str(cache), 650)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tokenizers):
  """A work directory as a training run leaves it: tokenizer/<key>/, a warm start, checkpoints 2 and 4,
  each of a different random policy (returned by name)."""
  workdir = tmp_path_factory.mktemp("run")
  tokenizer = tokenizers[0]
  (workdir / "tokenizer" / "4f3a").mkdir(parents=True)
  shutil.copy(tokenizer.model_file, workdir / "tokenizer" / "4f3a" / "tokenizer.model")
  config = ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=4,
                       num_kv_heads=2, head_dim=8, intermediate_size=48, rope_theta=10_000.0)
  identity = RunIdentity(model_config=config.to_dict(), tokenizer_fingerprint=tokenizer_fingerprint(tokenizer))
  models = {name: random_normal_model(config, seed) for seed, name in enumerate(["warm_start", "step2", "step4"])}
  _save_warm_start(workdir, models["warm_start"], identity)
  _save_checkpoint(workdir, models["step2"], identity, 2)
  _save_checkpoint(workdir, models["step4"], identity, 4)
  return workdir, models


def _greedy(model, tokenizer, prompts=PROMPTS, max_new_tokens=12):
  ids = generate(model, [tokenizer.encode(p) for p in prompts], max_new_tokens=max_new_tokens,
                 stop_sequences=[[tokenizer.eos_id]], vocab_limit=tokenizer.vocab_size)
  return [tokenizer.decode(row) for row in ids]


def test_samples_the_latest_checkpoint(run_dir, tokenizers):
  workdir, models = run_dir
  result = generate_main.run(load_config(workdir=str(workdir), temperature=0.0, max_new_tokens=12), PROMPTS)
  assert result.source == f"checkpoint 4 of {workdir}"
  assert result.completions == _greedy(models["step4"], tokenizers[0])
  assert result.completions != _greedy(models["step2"], tokenizers[0])


def test_falls_back_to_the_warm_start(run_dir, tokenizers, tmp_path):
  workdir, models = run_dir
  shutil.copytree(workdir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
  result = generate_main.run(load_config(workdir=str(tmp_path / "run"), temperature=0.0, max_new_tokens=12),
                             PROMPTS)
  assert result.source.startswith("warm start") and "no checkpoint yet" in result.source
  assert result.completions == _greedy(models["warm_start"], tokenizers[0])


def test_workdir_errors_are_clear(run_dir, tokenizers, tmp_path):
  workdir, _ = run_dir
  sample = lambda **overrides: generate_main.run(load_config(**overrides), ["x"])
  with pytest.raises(ValueError, match=r"holds no trained policy: no checkpoint .* and no warm start"):
    sample(workdir=str(tmp_path))
  with pytest.raises(ValueError, match=r"config\.workdir='/nonexistent' is not a directory"):
    sample(workdir="/nonexistent")
  with pytest.raises(ValueError, match=r"config\.workdir=.* and config\.checkpoint=.*: give one"):
    sample(workdir=str(workdir), checkpoint=str(workdir))
  with pytest.raises(ValueError, match=r"tokenizer .* is not the one the policy was trained with"):
    sample(workdir=str(workdir), tokenizer=tokenizers[1].model_file)
  shutil.copytree(workdir, tmp_path / "no_tokenizer", ignore=shutil.ignore_patterns("tokenizer"))
  with pytest.raises(ValueError, match=r"no tokenizer under .* is the one the policy was trained with"):
    sample(workdir=str(tmp_path / "no_tokenizer"))
  shutil.copytree(workdir, tmp_path / "old", ignore=shutil.ignore_patterns("checkpoints", "identity.json"))
  with pytest.raises(ValueError, match="does not record its model config and tokenizer"):
    sample(workdir=str(tmp_path / "old"))


@pytest.mark.e2e
def test_cli_samples_a_work_directory(run_dir):
  workdir, _ = run_dir
  result = run_cli("--config=configs/generate.py:tiny", f"--config.workdir={workdir}", "--config.max_new_tokens=3",
                   "--prompt", PROMPTS[0])
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"sampling checkpoint 4 of {workdir}" in result.stdout
  assert result.stdout.count("=== prompt:") == 1 and "tokens/s" in result.stdout


# ------------------------------------------------------------------ random init and config errors


@pytest.mark.e2e
def test_generates_with_a_toy_tokenizer_trained_on_first_use(tmp_path):
  result = run_cli("--config=configs/generate.py:tiny", f"--config.cache_dir={tmp_path}",
                   "--config.max_new_tokens=3", "--config.temperature=0", *SMALL_MODEL,
                   "--prompt", PROMPTS[0], "--prompt", PROMPTS[1])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "sampling random init (seed 0)" in result.stdout
  assert result.stdout.count("=== prompt:") == 2
  assert "6 new tokens in" in result.stdout and "tokens/s" in result.stdout
  assert os.path.isfile(tmp_path / "toy_tokenizer_4096" / "tokenizer.model")


def test_invalid_config_fails_before_building_anything(tmp_path):
  result = run_cli("--config=configs/generate.py:tiny", f"--config.cache_dir={tmp_path}",
                   "--config.model.num_kv_heads=3", "--prompt", "x")
  assert result.returncode != 0
  assert "--config.model.num_heads=4 is not divisible by num_kv_heads=3" in result.stderr
  assert not os.listdir(tmp_path)  # no tokenizer trained, nothing built


def test_toy_tokenizer_is_trained_once_and_cached(tmp_path):
  first = generate_main.toy_tokenizer(str(tmp_path), 600)
  mtime = os.path.getmtime(first.model_file)
  second = generate_main.toy_tokenizer(str(tmp_path), 600)
  assert second.model_file == first.model_file and os.path.getmtime(second.model_file) == mtime
  assert set(second.special_tokens) == set(tokenizer_lib.CHAT_SPECIAL_TOKENS)
  assert sorted(os.listdir(tmp_path / "toy_tokenizer_600")) == ["tokenizer.model"]


@pytest.mark.parametrize("field, value, message", [
    ("tokenizer", "/nonexistent/tok.model", r"config\.tokenizer='/nonexistent/tok.model' does not exist"),
    ("checkpoint", "/nonexistent", r"config\.checkpoint='/nonexistent' is not a directory"),
    ("model.vocab_size", 200, r"config\.model\.vocab_size=200 is too small for the toy tokenizer"),
])
def test_bad_paths_and_sizes_are_named(tmp_path, field, value, message):
  cfg = load_config(cache_dir=str(tmp_path))
  section, _, name = field.rpartition(".")
  setattr(cfg[section] if section else cfg, name, value)
  with pytest.raises(ValueError, match=message):
    generate_main.run(cfg, ["x"])
  with pytest.raises(ValueError, match="at least one --prompt"):
    generate_main.run(load_config(), [])
