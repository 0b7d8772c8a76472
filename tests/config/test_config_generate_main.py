"""`python -m rao_jax.generate`: end to end at toy size, config errors, tokenizer caching."""
import importlib.util
import os
import subprocess
import sys

import pytest

from rao_jax import generate
from rao_jax import tokenizer as tokenizer_lib

# A one-layer model keeps compilation short; the rest of the tiny preset is kept.
SMALL_MODEL = ["--config.model.num_layers=1", "--config.model.hidden_size=64",
               "--config.model.intermediate_size=128", "--config.model.head_dim=16"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.run([sys.executable, "-m", "rao_jax.generate", *args], capture_output=True, text=True,
                        check=False, timeout=240, env=env)


@pytest.mark.e2e
def test_generates_with_a_toy_tokenizer_trained_on_first_use(tmp_path):
  result = run_cli("--config=configs/generate.py:tiny", f"--config.workdir={tmp_path}",
                   "--config.max_new_tokens=3", "--config.temperature=0", *SMALL_MODEL,
                   "--prompt", "Craft 2 plank", "--prompt", "<thought>")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("=== prompt:") == 2
  assert "6 new tokens in" in result.stdout and "tokens/s" in result.stdout
  assert os.path.isfile(tmp_path / "toy_tokenizer_4096" / "tokenizer.model")


def test_invalid_config_fails_before_building_anything(tmp_path):
  result = run_cli("--config=configs/generate.py:tiny", f"--config.workdir={tmp_path}",
                   "--config.model.num_kv_heads=3", "--prompt", "x")
  assert result.returncode != 0
  assert "config.model.num_heads=4 is not divisible by config.model.num_kv_heads=3" in result.stderr
  assert not os.listdir(tmp_path)  # no tokenizer trained, nothing built


def test_toy_tokenizer_is_trained_once_and_cached(tmp_path):
  first = generate.toy_tokenizer(str(tmp_path), 600)
  mtime = os.path.getmtime(first.model_file)
  second = generate.toy_tokenizer(str(tmp_path), 600)
  assert second.model_file == first.model_file and os.path.getmtime(second.model_file) == mtime
  assert set(second.special_tokens) == set(tokenizer_lib.CHAT_SPECIAL_TOKENS)
  assert sorted(os.listdir(tmp_path / "toy_tokenizer_600")) == ["tokenizer.model"]


def test_decode_for_display_marks_ids_beyond_the_tokenizer(tmp_path):
  tok = generate.toy_tokenizer(str(tmp_path), 600)
  ids = tok.encode("ab") + [tok.vocab_size + 7] + tok.encode("cd")
  assert generate.decode_for_display(tok, ids) == f"ab<id:{tok.vocab_size + 7}>cd"
  with pytest.raises(ValueError, match="outside the tokenizer's vocabulary"):
    tok.decode(ids)


def load_config(preset: str = "tiny"):
  spec = importlib.util.spec_from_file_location("generate_config", "configs/generate.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


@pytest.mark.parametrize("field, value, message", [
    ("tokenizer", "/nonexistent/tok.model", r"config\.tokenizer='/nonexistent/tok.model' does not exist"),
    ("checkpoint", "/nonexistent", r"config\.checkpoint='/nonexistent' is not a directory"),
    ("model.vocab_size", 200, r"config\.model\.vocab_size=200 is too small for the toy tokenizer"),
])
def test_bad_paths_and_sizes_are_named(tmp_path, field, value, message):
  cfg = load_config()
  cfg.workdir = str(tmp_path)
  section, _, name = field.rpartition(".")
  setattr(cfg[section] if section else cfg, name, value)
  with pytest.raises(ValueError, match=message):
    generate.run(cfg, ["x"])
  with pytest.raises(ValueError, match="at least one --prompt"):
    generate.run(load_config(), [])
