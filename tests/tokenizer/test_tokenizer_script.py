"""scripts/train_tokenizer.py as a user runs it."""
import subprocess
import sys

from rao_jax import tokenizer as tokenizer_lib


def test_cli_trains_a_loadable_model(tmp_path):
  corpus = tmp_path / "a.txt"
  corpus.write_text("print('hello world')\nCrafted 2 plank.\n" * 50, encoding="utf-8")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "scripts/train_tokenizer.py", "--input", str(corpus), "--builtin_corpus",
       "--vocab_size", "500", "--output", str(out)],
      capture_output=True, text=True, check=False, timeout=60)
  assert result.returncode == 0, result.stderr
  tok = tokenizer_lib.load_tokenizer(str(out))
  assert tok.vocab_size <= 500
  assert tok.decode(tok.encode("print('hello world')")) == "print('hello world')"


def test_cli_without_input_fails(tmp_path):
  result = subprocess.run(
      [sys.executable, "scripts/train_tokenizer.py", "--vocab_size", "500", "--output", str(tmp_path)],
      capture_output=True, text=True, check=False, timeout=60)
  assert result.returncode != 0 and "--builtin_corpus" in result.stderr
