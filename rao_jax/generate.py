r"""Samples continuations of prompts from a random-init or imported Qwen3 model.

  python -m rao_jax.generate --config configs/generate.py:tiny --prompt "Craft 2 plank"
  python -m rao_jax.generate --config configs/generate.py:qwen3_0_6b \
      --config.checkpoint=/path/to/Qwen3-0.6B --config.temperature=0 --config.chat=True \
      --prompt "What is 2 + 3?" --prompt "Name a colour."

Several --prompt flags form one batch. The config is validated before anything is built or compiled.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Sequence

import jax
import ml_collections
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from rao_jax import config_utils
from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import chat
from rao_jax.model import generation
from rao_jax.model import hf_checkpoint
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer

_CONFIG = config_flags.DEFINE_config_file("config", None, "generation config file (configs/generate.py)",
                                          lock_config=True)
_PROMPTS = flags.DEFINE_multi_string("prompt", None, "prompt text; repeat the flag for a batch")
_WARMUP = flags.DEFINE_bool("warmup", False, "generate once untimed first, so tokens/s excludes compilation")


@dataclasses.dataclass(frozen=True)
class GenerationResult:
  """Decoded continuations (one per prompt), and the count and wall time of the timed sampling call."""

  completions: list[str]
  num_new_tokens: int
  seconds: float


def toy_tokenizer(workdir: str, vocab_size: int) -> tokenizer_lib.SentencePieceTokenizer:
  """The built-in-corpus SentencePiece model with at most `vocab_size` pieces, trained once per workdir."""
  model_file = os.path.join(workdir, f"toy_tokenizer_{vocab_size}", "tokenizer.model")
  if not os.path.isfile(model_file):
    os.makedirs(os.path.dirname(model_file), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(model_file)) as scratch:
      trained = tokenizer_lib.train_sentencepiece(
          tokenizer_lib.builtin_corpus(), model_prefix=os.path.join(scratch, "tokenizer"),
          vocab_size=vocab_size)
      os.replace(trained.model_file, model_file)  # atomic: concurrent runs never see half a file
  return tokenizer_lib.SentencePieceTokenizer(model_file)


def decode_for_display(tokenizer: tokenizer_lib.Tokenizer, ids: Sequence[int]) -> str:
  """Decodes `ids`, showing ids beyond the tokenizer's vocabulary as `<id:N>`.

  A model's vocabulary may be larger than its tokenizer's (Qwen pads it; a random-init toy samples from
  all of it), so sampled ids need not be decodable.
  """
  parts: list[str] = []
  run: list[int] = []
  for token in ids:
    if 0 <= token < tokenizer.vocab_size:
      run.append(token)
      continue
    if run:
      parts.append(tokenizer.decode(run))
      run = []
    parts.append(f"<id:{token}>")
  if run:
    parts.append(tokenizer.decode(run))
  return "".join(parts)


def load_tokenizer(cfg: ml_collections.ConfigDict, model_config: ModelConfig) -> tokenizer_lib.Tokenizer:
  """`cfg.tokenizer`, else the checkpoint's tokenizer, else the toy tokenizer cached in `cfg.workdir`."""
  if cfg.tokenizer:
    return tokenizer_lib.load_tokenizer(cfg.tokenizer)
  if cfg.checkpoint:
    return tokenizer_lib.load_tokenizer(cfg.checkpoint)
  return toy_tokenizer(cfg.workdir, model_config.vocab_size)


def checked_model_config(cfg: ml_collections.ConfigDict) -> ModelConfig:
  """The model's config (the checkpoint's when one is given), validated; ValueError names the field."""
  model_config = config_utils.validate_generate_config(cfg)
  if cfg.checkpoint:
    if not os.path.isdir(cfg.checkpoint):
      raise ValueError(f"config.checkpoint={cfg.checkpoint!r} is not a directory")
    config_file = os.path.join(cfg.checkpoint, "config.json")
    if not os.path.isfile(config_file):
      raise ValueError(f"config.checkpoint={cfg.checkpoint!r} has no config.json")
    with open(config_file, encoding="utf-8") as f:
      model_config = ModelConfig.from_hf_config(json.load(f))
  elif cfg.tokenizer:
    if not os.path.exists(cfg.tokenizer):
      raise ValueError(f"config.tokenizer={cfg.tokenizer!r} does not exist")
  else:
    minimum = 4 + len(tokenizer_lib.CHAT_SPECIAL_TOKENS) + 256 + 1
    if model_config.vocab_size < minimum:
      raise ValueError(f"config.model.vocab_size={model_config.vocab_size} is too small for the toy "
                       f"tokenizer (needs >= {minimum})")
  return model_config


def run(cfg: ml_collections.ConfigDict, prompts: Sequence[str], *, warmup: bool = False
        ) -> GenerationResult:
  """Builds tokenizer and model from `cfg` and samples `cfg.max_new_tokens` tokens per prompt."""
  if not prompts:
    raise ValueError("give at least one --prompt")
  model_config = checked_model_config(cfg)
  tokenizer = load_tokenizer(cfg, model_config)
  if tokenizer.vocab_size > model_config.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but config.model.vocab_size="
                     f"{model_config.vocab_size}")
  if cfg.chat:
    layout = chat.layout_for(tokenizer)
    prompt_ids = [layout.prompt_ids("", p) for p in prompts]
  else:
    prompt_ids = [tokenizer.encode(p) for p in prompts]
  if any(not ids for ids in prompt_ids):
    raise ValueError("every prompt must encode to at least one token")

  if cfg.checkpoint:
    model, model_config = hf_checkpoint.load_hf_checkpoint(cfg.checkpoint)
  else:
    # A random-init model has no use for ids its tokenizer cannot decode (the toy tokenizer may stop
    # short of the preset's vocabulary on a small corpus): size the vocabulary to the tokenizer.
    model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    model = Transformer(model_config, rngs=nnx.Rngs(cfg.seed))

  def sample() -> list[list[int]]:
    return generation.generate(model, model_config, prompt_ids, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, rng=jax.random.key(cfg.seed),
                               eos_id=tokenizer.eos_id)

  if warmup:
    sample()
  start = time.perf_counter()
  new_ids = sample()
  seconds = time.perf_counter() - start
  return GenerationResult(completions=[decode_for_display(tokenizer, ids) for ids in new_ids],
                          num_new_tokens=sum(len(ids) for ids in new_ids), seconds=seconds)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cfg = _CONFIG.value
  if cfg is None:
    raise app.UsageError("--config is required, e.g. --config configs/generate.py:tiny")
  prompts = _PROMPTS.value or []
  result = run(cfg, prompts, warmup=_WARMUP.value)
  for prompt, completion in zip(prompts, result.completions):
    print(f"=== prompt: {prompt!r}\n{completion}")
  note = "" if _WARMUP.value else " (includes compilation; --warmup excludes it)"
  print(f"{result.num_new_tokens} new tokens in {result.seconds:.2f} s: "
        f"{result.num_new_tokens / max(result.seconds, 1e-9):.1f} tokens/s{note}")


if __name__ == "__main__":
  app.run(main)
