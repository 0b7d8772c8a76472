"""The RAO run's starting point, built once and cached in the work directory.

* Tokenizer: a SentencePiece model trained on the built-in corpus plus expert transcripts of training
  tasks (so tool names, items and turn markers are cheap), in `{workdir}/tokenizer/{key}/tokenizer.model`
  (`key` hashes what it was trained on); or a given tokenizer file (the imported checkpoint's).
* Policy: an imported Hugging Face checkpoint, or a randomly initialised model trained by supervised
  fine-tuning on expert transcripts (`rao_jax.train.sft`). The SFT result is saved with Orbax under
  `{workdir}/warm_start/{fingerprint}/`, where the fingerprint hashes everything that determines it
  (model config, tokenizer, SFT data and optimisation settings, seed), so a changed setting builds a new
  warm start instead of silently reusing a stale one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import orbax.checkpoint as ocp
import tqdm
from flax import nnx

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import prompts
from rao_jax.agent.chat import ChatLayout
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth.tasks import Task
from rao_jax.envs.textcraft_synth.world import get_world
from rao_jax.model import hf_checkpoint
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.train import sft
from rao_jax.train.checkpoint import tokenizer_fingerprint


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  """A given tokenizer (`path`), or one trained on `corpus_examples` built-in lines plus the expert
  transcripts of the first `transcript_tasks` training tasks, with at most `vocab_size` pieces.

  With `whole_item_names` every item name of the world is one piece (a SentencePiece user-defined
  symbol): "t8_i1_4" is one token instead of seven, so a policy copies an item from the goal or from a
  recipe by copying one token, and transcripts are shorter. The pieces take that many ids of
  `vocab_size` (the "small" world has 422 items; the "paper" world 1,452).
  """

  path: str = ""
  vocab_size: int = 1024
  corpus_examples: int = 1000
  transcript_tasks: int = 24
  whole_item_names: bool = False

  def __post_init__(self):
    if self.vocab_size <= 0 or self.corpus_examples < 0 or self.transcript_tasks < 0:
      raise ValueError("tokenizer.vocab_size must be positive, corpus_examples and transcript_tasks >= 0")


def transcript_texts(tasks: Sequence[Task], data_config: sft.SFTDataConfig) -> list[str]:
  """Node prompts (with and without delegation) and both expert solvers' turns and observations on
  `tasks`, rendered as the warm start renders them: the tokenizer's training text, so the text every
  node reads and writes costs few tokens."""
  texts = []
  for task in tasks:
    root = env_lib.make_root_environment(data_config.env_config, task.to_dict())
    for delegation in (True, False):
      parts = root.prompt_parts(delegation)
      texts += prompts.node_prompt(parts, delegation=delegation, step_budget=data_config.max_steps_per_node,
                                   style=data_config.prompt_style)
    for delegate in (True, False):
      transcript = sft.solve_task(task, data_config, delegate)
      for node in transcript.nodes() if transcript else ():
        for index, turn in enumerate(node.turns, start=1):
          texts.append(turn.assistant_text())
          texts.append(node.observation_text(index))
  return texts


def build_tokenizer(directory: str, config: TokenizerConfig, train_tasks: Sequence[Task],
                    data_config: sft.SFTDataConfig) -> tokenizer_lib.Tokenizer:
  """`config.path`'s tokenizer, else `{directory}/{key}/tokenizer.model`, trained there on first use.

  The key hashes everything the training text and pieces depend on (the tokenizer config, the warm
  start's settings that fix the world and how prompts and transcripts read, and the transcript tasks),
  so a changed setting trains a new tokenizer instead of silently reusing one trained for other text.
  """
  if config.path:
    return tokenizer_lib.load_tokenizer(config.path)
  transcript_tasks = train_tasks[:config.transcript_tasks]
  text_fields = ("world", "info_style", "delegation", "max_steps_per_node", "max_depth", "prompt_style",
                 "max_own_crafts", "crafts_per_cell", "transcript_style")  # what the training text depends on
  identity = {"config": dataclasses.asdict(config), "tasks": [t.to_dict() for t in transcript_tasks],
              "data": {name: getattr(data_config, name) for name in text_fields}}
  directory = os.path.join(directory, _content_key(identity))
  model_file = os.path.join(directory, "tokenizer.model")
  if not os.path.isfile(model_file):
    os.makedirs(directory, exist_ok=True)
    texts = (tokenizer_lib.builtin_corpus(config.corpus_examples)
             + transcript_texts(transcript_tasks, data_config))
    whole_words = tuple(get_world(data_config.world).items) if config.whole_item_names else ()
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
      trained = tokenizer_lib.train_sentencepiece(texts, model_prefix=os.path.join(scratch, "tokenizer"),
                                                  vocab_size=config.vocab_size, whole_words=whole_words)
      os.replace(trained.model_file, model_file)  # atomic: a killed run never leaves half a file
  return tokenizer_lib.SentencePieceTokenizer(model_file)


def warm_start_fingerprint(model_config: ModelConfig, tokenizer: tokenizer_lib.Tokenizer,
                           data_config: sft.SFTDataConfig, sft_config: sft.SFTConfig, num_tasks: int) -> str:
  """Hash of everything the SFT warm start depends on."""
  identity = {"model": model_config.to_dict(), "tokenizer": tokenizer_fingerprint(tokenizer),
              "data": dataclasses.asdict(data_config), "sft": dataclasses.asdict(sft_config),
              "num_tasks": num_tasks}
  return _content_key(identity)


def _content_key(identity: dict) -> str:
  """16 hex digits of the sha256 of `identity` as sorted JSON: a directory name for what it describes."""
  return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _abstract_model(model_config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  return nnx.split(nnx.eval_shape(lambda: Transformer(model_config, rngs=nnx.Rngs(0))))


def sft_warm_start(directory: str, model_config: ModelConfig, layout: ChatLayout, train_tasks: Sequence[Task],
                   data_config: sft.SFTDataConfig, sft_config: sft.SFTConfig, *, seed: int,
                   mesh=None, progress_bar: bool = True) -> Transformer:
  """The SFT warm-start model: loaded from `directory` when its fingerprint was built before, else trained
  from a random initialisation (seeded) on the expert transcripts of `train_tasks`, and saved."""
  key = warm_start_fingerprint(model_config, layout.tokenizer, data_config, sft_config, len(train_tasks))
  path = os.path.join(os.path.abspath(directory), key)
  checkpointer = ocp.StandardCheckpointer()
  graphdef, abstract = _abstract_model(model_config)
  if os.path.isdir(os.path.join(path, "params")):
    params = checkpointer.restore(os.path.join(path, "params"), abstract)
    return nnx.merge(graphdef, params)
  conversations = sft.build_sft_sequences(train_tasks, layout, data_config)
  logging.info("warm start: SFT on %d expert node sequences for %d steps", len(conversations),
               sft_config.num_steps)
  model = Transformer(model_config, rngs=nnx.Rngs(seed))
  with tqdm.tqdm(total=sft_config.num_steps, desc="SFT warm start", disable=not progress_bar) as bar:
    def on_step(step, metrics):
      bar.update(1)
      bar.set_postfix(loss=f"{float(metrics['loss']):.3f}")
    model, losses = sft.train_sft(model, conversations, sft_config, mesh=mesh, on_step=on_step)
  os.makedirs(path, exist_ok=True)
  checkpointer.save(os.path.join(path, "params"), nnx.state(model))
  checkpointer.wait_until_finished()
  with open(os.path.join(path, "sft_losses.json"), "w", encoding="utf-8") as f:
    json.dump({"num_sequences": len(conversations), "loss": np.asarray(losses).round(4).tolist()}, f)
  return model


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
    raise ValueError(f"config.model.checkpoint={checkpoint!r} does not match config.model: "
                     + ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in different.items()))
  return model

