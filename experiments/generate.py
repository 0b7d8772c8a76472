r"""Samples continuations of prompts from a trained policy, an imported Qwen3 model or a random-init toy.

  python experiments/generate.py --config configs/generate.py:tiny \
      --config.workdir=workdir/textcraft_tiny --config.temperature=0 --prompt "Craft 2x m0_i1"
  python experiments/generate.py --config configs/generate.py:qwen3_0_6b \
      --config.checkpoint=/path/to/Qwen3-0.6B --config.temperature=0 --config.chat=True \
      --prompt "What is 2 + 3?" --prompt "Name a colour."
  python experiments/generate.py --config configs/generate.py:tiny --prompt "Craft 2 plank"

`--config.workdir` is a training run's work directory: its latest checkpoint (its warm start before the
first one) is sampled with the run's own model config and tokenizer. `--config.checkpoint` is a Hugging Face
Qwen3 directory; with neither, `config.model` is initialised at random. Several --prompt flags form one
batch, sampled by `rao_jax.rollout.generate` (the rollout engine's sampler) until the tokenizer's eos or
`config.max_new_tokens`. The config is validated before anything is built or compiled.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence

import jax
import ml_collections
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from rao_jax import config_utils
from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import chat, corpus
from rao_jax.model import hf_checkpoint
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.generate import generate
from rao_jax.train.saved_policy import load_saved_policy

_CONFIG = config_flags.DEFINE_config_file("config", None, "generation config file (configs/generate.py)",
                                          lock_config=True)
_PROMPTS = flags.DEFINE_multi_string("prompt", None, "prompt text; repeat the flag for a batch")
_WARMUP = flags.DEFINE_bool("warmup", False, "generate once untimed first, so tokens/s excludes compilation")


@dataclasses.dataclass(frozen=True)
class GenerationResult:
  """Decoded continuations (one per prompt), the model's origin, and the count and wall time of the timed
  sampling call."""

  completions: list[str]
  source: str
  num_new_tokens: int
  seconds: float


def toy_tokenizer(cache_dir: str, vocab_size: int) -> tokenizer_lib.SentencePieceTokenizer:
  """The built-in-corpus SentencePiece model with at most `vocab_size` pieces, trained once per cache_dir."""
  model_file = os.path.join(cache_dir, f"toy_tokenizer_{vocab_size}", "tokenizer.model")
  if not os.path.isfile(model_file):
    os.makedirs(os.path.dirname(model_file), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(model_file)) as scratch:
      trained = tokenizer_lib.train_sentencepiece(
          corpus.builtin_corpus(), model_prefix=os.path.join(scratch, "tokenizer"), vocab_size=vocab_size)
      os.replace(trained.model_file, model_file)  # atomic: concurrent runs never see half a file
  return tokenizer_lib.SentencePieceTokenizer(model_file)


def checked_model_config(cfg: ml_collections.ConfigDict) -> ModelConfig:
  """Validates `cfg` and the paths it names (ValueError naming the field); returns `config.model`."""
  model_config = config_utils.validate_generate_config(cfg)
  if cfg.workdir and cfg.checkpoint:
    raise ValueError(f"config.workdir={cfg.workdir!r} and config.checkpoint={cfg.checkpoint!r}: give one")
  if cfg.workdir and not os.path.isdir(cfg.workdir):
    raise ValueError(f"config.workdir={cfg.workdir!r} is not a directory")
  if cfg.checkpoint:
    if not os.path.isdir(cfg.checkpoint):
      raise ValueError(f"config.checkpoint={cfg.checkpoint!r} is not a directory")
    if not os.path.isfile(os.path.join(cfg.checkpoint, "config.json")):
      raise ValueError(f"config.checkpoint={cfg.checkpoint!r} has no config.json")
  if cfg.tokenizer and not os.path.exists(cfg.tokenizer):
    raise ValueError(f"config.tokenizer={cfg.tokenizer!r} does not exist")
  minimum = 4 + len(tokenizer_lib.CHAT_SPECIAL_TOKENS) + 256 + 1
  if not (cfg.workdir or cfg.checkpoint or cfg.tokenizer) and model_config.vocab_size < minimum:
    raise ValueError(f"config.model.vocab_size={model_config.vocab_size} is too small for the toy "
                     f"tokenizer (needs >= {minimum})")
  return model_config


def load_model(cfg: ml_collections.ConfigDict, model_config: ModelConfig
               ) -> tuple[nnx.Module, tokenizer_lib.Tokenizer, str]:
  """The model `cfg` names, its tokenizer, and where the model came from (for the output)."""
  if cfg.workdir:
    policy = load_saved_policy(cfg.workdir, cfg.tokenizer)
    return policy.model, policy.tokenizer, policy.source
  if cfg.checkpoint:
    model, loaded_config = hf_checkpoint.load_hf_checkpoint(cfg.checkpoint)
    tokenizer = tokenizer_lib.load_tokenizer(cfg.tokenizer or cfg.checkpoint)
    if tokenizer.vocab_size > loaded_config.vocab_size:
      raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model in {cfg.checkpoint!r} "
                       f"only {loaded_config.vocab_size}")
    return model, tokenizer, f"Hugging Face checkpoint {cfg.checkpoint}"
  if cfg.tokenizer:
    tokenizer = tokenizer_lib.load_tokenizer(cfg.tokenizer)
  else:
    tokenizer = toy_tokenizer(cfg.cache_dir, model_config.vocab_size)
  # A random-init model has no use for ids its tokenizer cannot decode (the toy tokenizer may stop short
  # of the preset's vocabulary on a small corpus): size the vocabulary to the tokenizer.
  model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
  return Transformer(model_config, rngs=nnx.Rngs(cfg.seed)), tokenizer, f"random init (seed {cfg.seed})"


def run(cfg: ml_collections.ConfigDict, prompts: Sequence[str], *, warmup: bool = False
        ) -> GenerationResult:
  """Builds tokenizer and model from `cfg` and samples up to `cfg.max_new_tokens` tokens per prompt."""
  if not prompts:
    raise ValueError("give at least one --prompt")
  model, tokenizer, source = load_model(cfg, checked_model_config(cfg))
  if cfg.chat:
    layout = chat.layout_for(tokenizer)
    prompt_ids = [layout.prompt_ids("", p) for p in prompts]
  else:
    prompt_ids = [tokenizer.encode(p) for p in prompts]
  if any(not ids for ids in prompt_ids):
    raise ValueError("every prompt must encode to at least one token")

  def sample() -> list[list[int]]:
    return generate(model, prompt_ids, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                    rng=jax.random.key(cfg.seed), stop_sequences=[[tokenizer.eos_id]],
                    vocab_limit=tokenizer.vocab_size)

  if warmup:
    sample()
  start = time.perf_counter()
  new_ids = sample()
  seconds = time.perf_counter() - start
  return GenerationResult(completions=[tokenizer.decode(ids) for ids in new_ids], source=source,
                          num_new_tokens=sum(len(ids) for ids in new_ids), seconds=seconds)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  cfg = _CONFIG.value
  if cfg is None:
    raise app.UsageError("--config is required, e.g. --config configs/generate.py:tiny")
  prompts = _PROMPTS.value or []
  result = run(cfg, prompts, warmup=_WARMUP.value)
  print(f"sampling {result.source}")
  for prompt, completion in zip(prompts, result.completions):
    print(f"=== prompt: {prompt!r}\n{completion}")
  note = "" if _WARMUP.value else " (includes compilation; --warmup excludes it)"
  print(f"{result.num_new_tokens} new tokens in {result.seconds:.2f} s: "
        f"{result.num_new_tokens / max(result.seconds, 1e-9):.1f} tokens/s{note}")


if __name__ == "__main__":
  app.run(main)
