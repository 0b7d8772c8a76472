"""Shared pytest setup: keep JAX on the CPU and quiet, whatever the host has; shared builders."""
import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rao_jax import host_memory  # noqa: E402

host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work

import pytest  # noqa: E402  (after the environment: importing jax through plugins must see it)
import tokenizers  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

from rao_jax.agent import corpus  # noqa: E402

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _build_qwen_like_tokenizer_json(directory, *, tokenizer_config=None, config=None, vocab_size=400,
                                    extra_texts=()) -> str:
  """Writes `directory/tokenizer.json`: a byte-level BPE with Qwen's special tokens, trained here on the
  built-in corpus (+ `extra_texts`); optionally tokenizer_config.json and config.json. Returns the path."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIALS),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(corpus.builtin_corpus(200) + list(extra_texts), trainer)
  directory.mkdir(parents=True, exist_ok=True)
  tok.save(str(directory / "tokenizer.json"))
  if tokenizer_config is not None:
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
  if config is not None:
    (directory / "config.json").write_text(json.dumps(config))
  return str(directory)


@pytest.fixture(scope="session")
def build_qwen_like_tokenizer_json():
  """The builder of a Qwen-like Hugging Face tokenizer directory (see `_build_qwen_like_tokenizer_json`)."""
  return _build_qwen_like_tokenizer_json
