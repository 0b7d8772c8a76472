"""The RAO run's starting point, built once and cached in the work directory.

* Tokenizer: a SentencePiece model trained on the built-in corpus plus the environment suite's expert
  demonstrations of training tasks (so tool names, items and turn markers are cheap), in
  `{workdir}/tokenizer/{key}/tokenizer.model` (`key` hashes what it was trained on); or a given
  tokenizer file (the imported checkpoint's).
* Policy: an imported Hugging Face checkpoint, or a randomly initialised model trained by supervised
  fine-tuning on expert transcripts (`rao_jax.train.sft`). The SFT result is saved with Orbax under
  `{workdir}/warm_start/{fingerprint}/`, where the fingerprint hashes everything that determines it
  (model config, tokenizer, suite, episode format, SFT data and optimisation settings, seed), so a
  changed setting builds a new warm start instead of silently reusing a stale one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import tqdm
from flax import nnx

from rao_jax import distributed
from rao_jax import sharding as sharding_lib
from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus, episode, prompts
from rao_jax.agent.chat import ChatLayout
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs.suite import Suite, Task
from rao_jax.errors import FieldError
from rao_jax.model import hf_checkpoint
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.train import sft
from rao_jax.train.checkpoint import tokenizer_fingerprint


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  """A given tokenizer (`path`), or one trained on `corpus_examples` built-in lines plus the expert
  demonstrations of the first `transcript_tasks` training tasks, with at most `vocab_size` pieces.

  With `whole_words` every string of the suite's `whole_words()` is one piece (a SentencePiece
  user-defined symbol): TextCraft's item "t8_i1_4" is one token instead of seven, so a policy copies an
  item from the goal or from a recipe by copying one token, and transcripts are shorter. The pieces take
  that many ids of `vocab_size` (the "small" world has 422 items; the "paper" world 1,452).
  """

  path: str = ""
  vocab_size: int = 1024
  corpus_examples: int = 1000
  transcript_tasks: int = 24
  whole_words: bool = False

  def __post_init__(self):
    if self.vocab_size <= 0:
      raise FieldError("vocab_size", self.vocab_size, "must be positive")
    for name in ("corpus_examples", "transcript_tasks"):
      if getattr(self, name) < 0:
        raise FieldError(name, getattr(self, name), "must be >= 0")


def transcript_texts(suite: Suite, tasks: Sequence[Task], fmt: EpisodeFormat) -> list[str]:
  """Root prompts (with and without delegation) and both experts' turns and observations on `tasks`,
  rendered by the engine's renderer: the tokenizer's training text, so that the text every node reads
  and writes costs few tokens."""
  texts = []
  for task in tasks:
    root = suite.root_environment(task)
    for delegation in (True, False):
      texts += prompts.node_prompt(root.prompt_parts(delegation), delegation=delegation,
                                   step_budget=fmt.max_steps_per_node, style=fmt.prompt_style)
    for delegate in (True, False):
      for node in suite.demonstrations(task, delegate=delegate, max_depth=fmt.max_depth) or ():
        texts += episode.demo_texts(node)
  return texts


def build_tokenizer(directory: str, config: TokenizerConfig, suite: Suite, train_tasks: Sequence[Task],
                    fmt: EpisodeFormat) -> tokenizer_lib.Tokenizer:
  """`config.path`'s tokenizer, else `{directory}/{key}/tokenizer.model`, trained there on first use.

  The key hashes everything the training text and pieces depend on (the tokenizer config, the suite and
  its config, the episode format and the transcript tasks), so a changed setting trains a new
  tokenizer instead of silently reusing one trained for other text.
  """
  if config.path:
    return tokenizer_lib.load_tokenizer(config.path)
  transcript_tasks = train_tasks[:config.transcript_tasks]
  identity = {"config": dataclasses.asdict(config), "tasks": [t.to_dict() for t in transcript_tasks],
              "suite": [type(suite).__name__, dataclasses.asdict(suite.config)],
              "episode": dataclasses.asdict(fmt)}
  directory = os.path.join(directory, _content_key(identity))
  model_file = os.path.join(directory, "tokenizer.model")
  if not os.path.isfile(model_file):
    os.makedirs(directory, exist_ok=True)
    texts = corpus.builtin_corpus(config.corpus_examples) + transcript_texts(suite, transcript_tasks, fmt)
    whole_words = suite.whole_words() if config.whole_words else ()
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
      trained = tokenizer_lib.train_sentencepiece(texts, model_prefix=os.path.join(scratch, "tokenizer"),
                                                  vocab_size=config.vocab_size, whole_words=whole_words)
      os.replace(trained.model_file, model_file)  # atomic: a killed run never leaves half a file
  return tokenizer_lib.SentencePieceTokenizer(model_file)


def warm_start_fingerprint(model_config: ModelConfig, tokenizer: tokenizer_lib.Tokenizer, suite: Suite,
                           data_config: sft.SFTDataConfig, fmt: EpisodeFormat, sft_config: sft.SFTConfig,
                           num_tasks: int) -> str:
  """Hash of everything the SFT warm start depends on."""
  identity = {"model": model_config.to_dict(), "tokenizer": tokenizer_fingerprint(tokenizer),
              "suite": [type(suite).__name__, dataclasses.asdict(suite.config)],
              "data": dataclasses.asdict(data_config), "episode": dataclasses.asdict(fmt),
              "sft": dataclasses.asdict(sft_config), "num_tasks": num_tasks}
  return _content_key(identity)


def _content_key(identity: dict) -> str:
  """16 hex digits of the sha256 of `identity` as sorted JSON: a directory name for what it describes."""
  return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _abstract_model(model_config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  return nnx.split(nnx.eval_shape(lambda: Transformer(model_config, rngs=nnx.Rngs(0))))


# The warm start's run identity (model config, tokenizer fingerprint; as in a checkpoint's progress record),
# so that `rao_jax.train.saved_policy` can read the policy back without the training config.
IDENTITY_FILE = "identity.json"


def sft_warm_start(directory: str, model_config: ModelConfig, layout: ChatLayout, suite: Suite,
                   train_tasks: Sequence[Task], data_config: sft.SFTDataConfig, fmt: EpisodeFormat,
                   sft_config: sft.SFTConfig, *, seed: int, mesh=None, progress_bar: bool = True
                   ) -> tuple[Transformer, np.ndarray]:
  """The SFT warm-start model and its loss curve ([num_steps] float32): loaded from `directory` when its
  fingerprint was built before, else trained from a random initialisation (seeded) on the suite's
  expert demonstrations of `train_tasks`, and saved."""
  key = warm_start_fingerprint(model_config, layout.tokenizer, suite, data_config, fmt, sft_config,
                               len(train_tasks))
  path = os.path.join(os.path.abspath(directory), key)
  checkpointer = ocp.StandardCheckpointer()
  graphdef, abstract = _abstract_model(model_config)
  losses_file = os.path.join(path, "sft_losses.json")
  if os.path.isdir(os.path.join(path, "params")):
    if mesh is not None:  # each host reads the pieces its devices hold (required with several hosts)
      abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
                              sharding_lib.tree_shardings(abstract, mesh))
    params = checkpointer.restore(os.path.join(path, "params"), abstract)
    losses = []
    if os.path.isfile(losses_file):  # written after the parameters: absent if a run died in between
      with open(losses_file, encoding="utf-8") as f:
        losses = json.load(f)["loss"]
    return nnx.merge(graphdef, params), np.asarray(losses, np.float32)
  conversations = sft.build_sft_sequences(suite, train_tasks, layout, data_config, fmt)
  logging.info("warm start: SFT on %d expert node sequences for %d steps", len(conversations),
               sft_config.num_steps)
  model = Transformer(model_config, rngs=nnx.Rngs(seed))
  with tqdm.tqdm(total=sft_config.num_steps, desc="SFT warm start", disable=not progress_bar) as bar:
    def on_step(step, metrics):
      bar.update(1)
      bar.set_postfix(loss=f"{float(metrics['loss']):.3f}")
    model, losses = sft.train_sft(model, conversations, sft_config, mesh=mesh, on_step=on_step)
  if distributed.is_primary():  # the work directory is shared; its small files are written once
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, IDENTITY_FILE), "w", encoding="utf-8") as f:  # before the params
      json.dump({"model_config": model_config.to_dict(),
                 "tokenizer_fingerprint": tokenizer_fingerprint(layout.tokenizer)}, f)
  distributed.barrier("rao_jax warm start directory")
  checkpointer.save(os.path.join(path, "params"), nnx.state(model))  # every host saves its pieces
  checkpointer.wait_until_finished()
  if distributed.is_primary():
    with open(losses_file, "w", encoding="utf-8") as f:
      json.dump({"num_sequences": len(conversations), "loss": np.asarray(losses).round(4).tolist()}, f)
  return model, np.asarray(losses, np.float32)


def imported_model(checkpoint: str, model_config: ModelConfig) -> Transformer:
  """A Hugging Face Qwen3 checkpoint directory, checked against the configured model shape and loaded with
  the configured parameter and compute dtypes (whatever the checkpoint was stored in)."""
  model, loaded_config = hf_checkpoint.load_hf_checkpoint(checkpoint, dtype=model_config.dtype,
                                                          param_dtype=model_config.param_dtype)
  loaded = loaded_config.to_dict()
  wanted = model_config.to_dict()
  different = {k: (loaded.get(k), wanted.get(k)) for k in wanted
               if k not in ("dtype", "param_dtype") and loaded.get(k) != wanted.get(k)}
  if different:
    raise ValueError(f"--config.warm_start.checkpoint={checkpoint!r} does not match config.model: "
                     + ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in different.items()))
  return model

