"""Supervised warm start on an environment suite's expert demonstrations.

A toy model trained from scratch knows neither the turn format nor the tools nor `launch_subagent`, so RL
would start from zero reward. The warm start trains the same packed rows and the same train step with a
token cross-entropy on expert trees: every node of an expert tree becomes one sequence, rendered by the
rollout engine's own renderer (`rao_jax.agent.episode`), so the loss falls on the policy's turns only
and what SFT trains on is token for token what the engine would show.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rao_jax import distributed
from rao_jax import sharding as sharding_lib
from rao_jax.agent import episode
from rao_jax.agent.chat import ChatLayout, Conversation, Provenance
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.envs.base import DemoNode
from rao_jax.envs.suite import Suite, Task
from rao_jax.errors import FieldError
from rao_jax.train import packing
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer
from rao_jax.train.train_step import Metrics, TrainStepConfig, create_train_state, make_train_step


@dataclasses.dataclass(frozen=True)
class SFTDataConfig:
  """Which expert demonstrations the warm start sees.

  Attributes:
    recursive_fraction: the share of expert trees written by the delegating expert; the rest are the
      flat expert's. Each task, and each of its augmented copies, draws its expert independently
      (seeded), so 0 is a single-agent warm start, 1 a fully recursive one, and values in between a
      policy that delegates at some nodes and not at others, for RL to sharpen.
    recursive_difficulties: the difficulties whose trees may be delegating (empty: all of them); the
      others are always the flat expert's. `recursive_fraction` is the share within these tiers. A
      warm start that delegates only where a flat solution overflows the window (chained research's
      3-hop questions) leaves RL on every tier to sharpen when to delegate, not to unlearn it.
    difficulties: task difficulties to keep (a subset of the suite's).
    max_tasks_per_difficulty: at most this many tasks of each difficulty, in the given order (0: all).
    augmented_copies: each expert tree is also rendered this many times as an augmented copy
      (`Suite.demonstrations(variant=...)`; TextCraft renames the world's items), so that names can
      only be predicted by copying them from the goal and the observations.
    keep_originals: also demonstrate each tree as written (copy 0). False (needs `augmented_copies` >=
      1): only the renamed copies, so the warm start never sees the training tasks' own names and facts;
      RL on those tasks then rewards copying names from observations, which transfers to held-out
      tasks, and not recalling memorised facts, which does not.
    seed: seeds the expert draws (set by the trainer from the run's seed).
  """

  recursive_fraction: float = 0.5
  recursive_difficulties: tuple[str, ...] = ()
  difficulties: tuple[str, ...] = ("easy", "medium")
  max_tasks_per_difficulty: int = 0
  augmented_copies: int = 0
  keep_originals: bool = True
  seed: int = 0

  def __post_init__(self):
    if not 0.0 <= self.recursive_fraction <= 1.0:
      raise FieldError("recursive_fraction", self.recursive_fraction, "must be in [0, 1]")
    if not self.difficulties:
      raise FieldError("difficulties", self.difficulties, "must name at least one difficulty")
    for name in ("max_tasks_per_difficulty", "augmented_copies"):
      if getattr(self, name) < 0:
        raise FieldError(name, getattr(self, name), "must be >= 0")
    if not self.keep_originals and self.augmented_copies < 1:
      raise FieldError("keep_originals", False, "needs augmented_copies >= 1 (else there is nothing to train on)")
    stray = sorted(set(self.recursive_difficulties) - set(self.difficulties))
    if stray:
      raise FieldError("recursive_difficulties", self.recursive_difficulties,
                       f"names {stray}, which are not among difficulties={self.difficulties}")

  def delegates(self, task_index: int, copy: int, difficulty: str) -> bool:
    """Whether copy `copy` of task `task_index` (of `difficulty`) is written by the delegating expert:
    never outside `recursive_difficulties` (when it names tiers), else a seeded draw of probability
    `recursive_fraction`, the same draw with or without `recursive_difficulties`."""
    if self.recursive_difficulties and difficulty not in self.recursive_difficulties:
      return False
    if self.recursive_fraction in (0.0, 1.0):
      return self.recursive_fraction == 1.0
    return random.Random(f"sft/solver/{self.seed}/{task_index}/{copy}").random() < self.recursive_fraction


@dataclasses.dataclass(frozen=True)
class SFTConfig:
  """The warm start's optimisation: `num_steps` steps of `rows_per_batch` packed rows of `row_length`.

  `vocab_limit` (the tokenizer's size) and `seed` (the run's) are filled in by the trainer; the
  optimizer's `total_steps` of 0 means `num_steps`.
  """

  optimizer: OptimizerConfig = OptimizerConfig(learning_rate=1e-3, weight_decay=0.0)
  num_steps: int = 200
  rows_per_batch: int = 8
  row_length: int = 2048
  num_micro_batches: int = 1
  logits_chunk_size: int = 0
  attention_chunk_size: int = 0
  vocab_limit: int | None = None
  seed: int = 0

  def __post_init__(self):
    for name in ("num_steps", "rows_per_batch", "row_length", "num_micro_batches"):
      if getattr(self, name) <= 0:
        raise FieldError(name, getattr(self, name), "must be positive")
    for name in ("attention_chunk_size", "logits_chunk_size"):
      if getattr(self, name) < 0:
        raise FieldError(name, getattr(self, name), "must be >= 0")


def select_tasks(tasks: Sequence[Task], config: SFTDataConfig) -> list[Task]:
  """The tasks of the configured difficulties, at most `max_tasks_per_difficulty` of each, in order."""
  kept, per_difficulty = [], {}
  for task in tasks:
    count = per_difficulty.get(task.difficulty, 0)
    if task.difficulty in config.difficulties and (
        not config.max_tasks_per_difficulty or count < config.max_tasks_per_difficulty):
      kept.append(task)
      per_difficulty[task.difficulty] = count + 1
  return kept


def demonstration_trees(suite: Suite, tasks: Sequence[Task], config: SFTDataConfig, fmt: EpisodeFormat
                        ) -> Iterator[tuple[bool, list[DemoNode] | None]]:
  """(delegating?, expert tree or None) for each selected task and each of its augmented copies, the
  expert of each drawn by `config.delegates`."""
  for task_index, task in enumerate(select_tasks(tasks, config)):
    for copy in range(0 if config.keep_originals else 1, 1 + config.augmented_copies):
      delegate = config.delegates(task_index, copy, task.difficulty)
      yield delegate, suite.demonstrations(task, delegate=delegate, max_depth=fmt.max_depth,
                                           variant=f"{task_index}/{copy}" if copy else None)


def build_sft_sequences(suite: Suite, tasks: Sequence[Task], layout: ChatLayout, config: SFTDataConfig,
                        fmt: EpisodeFormat) -> list[Conversation]:
  """One `Conversation` per node of every expert tree (`demonstration_trees`), rendered as the engine
  renders a node under `fmt`.

  Tasks the expert cannot solve are left out. A node longer than the engine allows (more turns than
  `max_steps_per_node`, more tokens than `context_window`: a flat expert on a large task) is cut to the
  part the engine could have produced: a policy imitating it does what the expert does until it runs
  out of cells or context, as a single agent does on tasks too large for it.
  MODEL tokens carry NaN sampler log-probs (no sampler produced them).
  """
  conversations: list[Conversation] = []
  unsolved = cut_nodes = 0
  trees_by_expert = {False: 0, True: 0}
  for delegate, nodes in demonstration_trees(suite, tasks, config, fmt):
    if nodes is None:
      unsolved += 1
      continue
    trees_by_expert[delegate] += 1
    for node in nodes:
      conversation = episode.render_demo_node(layout, node, fmt)
      if len(node.turns) > fmt.max_steps_per_node or len(conversation) > fmt.context_window:
        cut_nodes += 1
        conversation = _engine_prefix(conversation, fmt)
      conversations.append(conversation)
  logging.info("sft: %d flat and %d delegating expert trees, %d node sequences (%d cut to the engine's "
               "limits of %d cells and %d tokens)", trees_by_expert[False], trees_by_expert[True],
               len(conversations), cut_nodes, fmt.max_steps_per_node, fmt.context_window)
  if unsolved:
    logging.warning("sft: the expert has no solution for %d of %d demonstration trees (the suite's expert "
                    "returned None, e.g. an inventory that cannot pay or a flat expert on a task that "
                    "must delegate); they are left out", unsolved, unsolved + sum(trees_by_expert.values()))
  return conversations


def _engine_prefix(conversation: Conversation, fmt: EpisodeFormat) -> Conversation:
  """The part of an expert node the engine could have produced: its first `max_steps_per_node` turns,
  cut at `context_window` tokens (a real node ends there with a step-limit or overflow error)."""
  turns_seen, end = 0, len(conversation)
  for index in range(1, len(conversation)):
    starts_turn = conversation.provenance[index] == Provenance.MODEL != conversation.provenance[index - 1]
    if starts_turn:
      turns_seen += 1
      if turns_seen > fmt.max_steps_per_node:
        end = index
        break
  cut = Conversation(conversation.ids[:end], conversation.provenance[:end], conversation.logprobs[:end])
  cut.truncate(fmt.context_window)
  return cut


def _batches(sequences: Sequence[packing.NodeSequence], config: SFTConfig) -> Iterator[packing.PackedBatch]:
  """Endless packed batches: every epoch a fresh shuffle of `sequences`, first-fit into full batches."""
  rng = np.random.default_rng(config.seed)
  while True:
    order = rng.permutation(len(sequences))
    batches = 0
    for batch, _ in packing.pack_stream((sequences[i] for i in order), config.rows_per_batch,
                                        config.row_length):
      batches += 1
      yield batch
    if not batches:  # else the next epoch would find none either, forever
      raise ValueError(f"none of the {len(sequences)} SFT sequences has a policy token within its first "
                       f"row_length={config.row_length} tokens (config.warm_start.row_length): are the "
                       "prompts longer than a row?")


def train_sft(model: nnx.Module, conversations: Sequence[Conversation], config: SFTConfig, *,
              mesh: Mesh | None = None, on_step: Callable[[int, Metrics], None] | None = None,
              probe: Callable[[int, nnx.Module], None] | None = None, probe_every: int = 0
              ) -> tuple[nnx.Module, np.ndarray]:
  """`config.num_steps` cross-entropy steps on `conversations`; returns the trained model and the loss curve.

  The loss curve is [num_steps] float32, the token-mean loss of each step's batch (before its update).
  `on_step(step, metrics)` is called after each step with device scalars (calling it forces a sync).
  `probe(steps_done, model)` sees the model after 0, k, 2k, ... steps and after the last one
  (k = `probe_every` > 0), for learning curves of anything measured on the model.
  """
  if probe is not None and probe_every <= 0:
    raise ValueError(f"probe_every={probe_every} must be positive when a probe is given")
  if not conversations:
    raise ValueError("train_sft needs at least one conversation")
  mesh = sharding_lib.make_mesh() if mesh is None else mesh
  tx = make_optimizer(config.optimizer)
  graphdef, state = create_train_state(model, tx, mesh)
  step_config = TrainStepConfig(loss="cross_entropy", num_micro_batches=config.num_micro_batches,
                                logits_chunk_size=config.logits_chunk_size, vocab_limit=config.vocab_limit,
                                attention_chunk_size=config.attention_chunk_size)
  step = make_train_step(graphdef, state, tx, step_config, mesh)
  sequences = [packing.conversation_sequence(c) for c in conversations]
  losses = []
  for index, batch in zip(range(config.num_steps), _batches(sequences, config)):
    if probe is not None and index % probe_every == 0:
      probe(index, nnx.merge(graphdef, state.params))
    state, metrics = step(state, batch)
    losses.append(metrics["loss"])
    if on_step is not None:
      on_step(index, metrics)
  if probe is not None:
    probe(config.num_steps, nnx.merge(graphdef, state.params))
  return nnx.merge(graphdef, state.params), np.asarray(distributed.fetch(losses), np.float32)
