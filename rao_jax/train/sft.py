"""Supervised warm start on the expert solvers' TextCraft-Synth transcripts.

A toy model trained from scratch knows neither the turn format nor the tools nor `launch_subagent`, so RL
would start from zero reward. The warm start trains the same packed rows and the same train step with a
token cross-entropy on expert transcripts: every node of an expert tree becomes one sequence, rendered
exactly as the rollout engine renders a node (`RolloutEngine._new_node` and `_observe`):

    layout.start(system_prompt(parts, delegation), first_user_turn(parts, step_budget))    ENV
    encode(turn.assistant_text())                                                          MODEL
    layout.continuation_ids(observation_text(i), completion)   (not after the finish turn) ENV
    ...

so the loss falls on the policy's turns only. Prompt parts are those the engine's interpreter would give
a node under the engine's `delegation` flag: TextCraft's rules and tool docs are the same at every node,
so they come from the root environment with the node's own goal.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rao_jax import sharding as sharding_lib
from rao_jax.agent import prompts
from rao_jax.agent.chat import ChatLayout, Conversation, Provenance
from rao_jax.envs.base import PromptParts
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers
from rao_jax.envs.textcraft_synth.renaming import ItemRenaming
from rao_jax.envs.textcraft_synth.tasks import DIFFICULTIES, Task
from rao_jax.envs.textcraft_synth.world import get_world
from rao_jax.train import packing
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer
from rao_jax.train.train_step import Metrics, TrainStepConfig, create_train_state, make_train_step


@dataclasses.dataclass(frozen=True)
class SFTDataConfig:
  """Which expert transcripts the warm start sees, and the engine settings they are rendered for.

  Attributes:
    recursive_fraction: the share of expert trees written by the delegating solver; the rest are the
      flat solver's. Each task, and each of its renamed copies, draws its solver independently (seeded),
      so 0 is a single-agent warm start, 1 a fully recursive one, and values in between a policy that
      delegates at some nodes and not at others, for RL to sharpen.
    difficulties: task difficulties to keep ("easy", "medium", "hard", "extreme").
    max_tasks_per_difficulty: at most this many tasks of each difficulty, in the given order (0: all).
    world, info_style: the TextCraft-Synth environment config of the tasks (`env_config`).
    delegation, max_steps_per_node, max_depth, context_window, prompt_style: the rollout engine's settings
      (`RolloutConfig`); they fix the prompt text and the recursive solver's depth, and nodes longer
      than the engine allows (more turns than the budget, more tokens than the window) are cut to the
      part it could have produced.
    max_own_crafts, crafts_per_cell, transcript_style: the solvers' knobs (`solvers.SolverConfig`:
      max_own_crafts, crafts_per_cell, style).
    renamed_copies: each expert tree is also rendered this many times under a random renaming of the
      world's items (`renaming.ItemRenaming`, seeded by task and copy), so that item names can only be
      predicted by copying them from the goal and the observations.
    seed: seeds the solver draws.
  """

  recursive_fraction: float = 0.5
  difficulties: tuple[str, ...] = ("easy", "medium")
  max_tasks_per_difficulty: int = 0
  world: str = "small"
  info_style: str = "full"
  delegation: bool = True
  max_steps_per_node: int = 25
  max_depth: int = 6
  context_window: int = 2048
  prompt_style: str = "full"
  max_own_crafts: int = 8
  crafts_per_cell: int = 1
  transcript_style: str = "spec"
  renamed_copies: int = 0
  seed: int = 0

  def __post_init__(self):
    if not 0.0 <= self.recursive_fraction <= 1.0:
      raise ValueError(f"sft.recursive_fraction={self.recursive_fraction!r} must be in [0, 1]")
    unknown = sorted(set(self.difficulties) - set(DIFFICULTIES))
    if unknown or not self.difficulties:
      raise ValueError(f"sft.difficulties={self.difficulties} must be a non-empty subset of {DIFFICULTIES}")
    prompts.check_style(self.prompt_style, "sft.prompt_style")
    if self.info_style not in env_lib.INFO_STYLES:
      raise ValueError(f"sft.info_style={self.info_style!r} is not one of {env_lib.INFO_STYLES}")
    if self.transcript_style not in solvers.TRANSCRIPT_STYLES:
      raise ValueError(f"sft.transcript_style={self.transcript_style!r} is not one of {solvers.TRANSCRIPT_STYLES}")
    if self.recursive_fraction > 0 and not self.delegation:
      raise ValueError(f"sft.recursive_fraction={self.recursive_fraction} asks for delegating transcripts, "
                       "which need delegation=True")
    for name in ("max_steps_per_node", "context_window", "max_own_crafts", "crafts_per_cell"):
      if getattr(self, name) <= 0:
        raise ValueError(f"sft.{name}={getattr(self, name)} must be positive")
    if self.max_tasks_per_difficulty < 0 or self.max_depth < 0 or self.renamed_copies < 0:
      raise ValueError("sft.max_tasks_per_difficulty, sft.max_depth and sft.renamed_copies must be >= 0")

  @property
  def env_config(self) -> dict[str, str]:
    return {"world": self.world, "info_style": self.info_style}

  def solver_config(self, delegate: bool) -> solvers.SolverConfig:
    """The flat (`delegate=False`) or delegating expert, rendered for the engine's limits."""
    return solvers.SolverConfig(delegate=delegate, max_depth=self.max_depth, max_own_crafts=self.max_own_crafts,
                                crafts_per_cell=self.crafts_per_cell, style=self.transcript_style)

  def delegates(self, task_index: int, copy: int) -> bool:
    """Whether copy `copy` of task `task_index` is written by the delegating solver (seeded draw)."""
    if self.recursive_fraction in (0.0, 1.0):
      return self.recursive_fraction == 1.0
    return random.Random(f"sft/solver/{self.seed}/{task_index}/{copy}").random() < self.recursive_fraction


@dataclasses.dataclass(frozen=True)
class SFTConfig:
  """The warm start's optimisation: `num_steps` steps of `rows_per_batch` packed rows of `row_length`."""

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
        raise ValueError(f"sft.{name}={getattr(self, name)} must be positive")
    if self.attention_chunk_size < 0:
      raise ValueError(f"sft.attention_chunk_size={self.attention_chunk_size} must be >= 0")


def render_node(parts: PromptParts, turns: Sequence[tuple[str, str | None]], layout: ChatLayout, *,
                delegation: bool, step_budget: int, prompt_style: str = "full") -> Conversation:
  """The token sequence the rollout engine builds for a node (see the module docstring).

  `parts` are the node's prompt parts; `turns` its (assistant turn text, observation text) pairs in
  order, the observation None after the node's last turn. Any environment's demonstrations render here.
  """
  system, user = prompts.node_prompt(parts, delegation=delegation, step_budget=step_budget, style=prompt_style)
  conversation = layout.start(system, user)
  for completion, observation in turns:
    layout.add_turn(conversation, layout.tokenizer.encode(completion), None, observation)
  return conversation


def node_conversation(node: solvers.Transcript, parts: PromptParts, layout: ChatLayout, *,
                      delegation: bool, step_budget: int, prompt_style: str = "full",
                      rename: Callable[[str], str] | None = None) -> Conversation:
  """One expert TextCraft node as the token sequence the rollout engine would have built for it.

  `rename` (e.g. an `ItemRenaming`) rewrites the goal, the turns and the observations, not the rules.
  """
  rename = rename or (lambda text: text)
  turns = [(rename(turn.assistant_text()), None if turn.output is None else rename(node.observation_text(index)))
           for index, turn in enumerate(node.turns, start=1)]
  return render_node(dataclasses.replace(parts, goal=rename(parts.goal)), turns, layout, delegation=delegation,
                     step_budget=step_budget, prompt_style=prompt_style)


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


def build_sft_sequences(tasks: Sequence[Task], layout: ChatLayout, config: SFTDataConfig
                        ) -> list[Conversation]:
  """One `Conversation` per node of every expert tree: each selected task is solved, and rendered once as
  it is and `config.renamed_copies` times under item renamings, each by the solver
  `config.delegates(task, copy)` picks.

  Trees whose root the solver could not solve are skipped. A node longer than the engine allows (more
  turns than `max_steps_per_node`, more tokens than `context_window`; a flat expert on a large task) is
  cut to the part the engine could have produced: a policy imitating it does what the expert does until
  it runs out of cells or context, as a single agent does on tasks too large for it.
  MODEL tokens carry NaN sampler log-probs (no sampler produced them).
  """
  conversations: list[Conversation] = []
  skipped_trees = cut_nodes = 0
  trees_by_solver = {False: 0, True: 0}
  for task_index, task in enumerate(select_tasks(tasks, config)):
    solved: dict[bool, solvers.Transcript | None] = {}
    for copy in range(1 + config.renamed_copies):
      delegate = config.delegates(task_index, copy)
      if delegate not in solved:
        solved[delegate] = solve_task(task, config, delegate)
      transcript = solved[delegate]
      if transcript is None:
        skipped_trees += 1
        continue
      trees_by_solver[delegate] += 1
      rename = ItemRenaming(get_world(config.world), f"{task_index}/{copy}") if copy else None
      for node, conversation in zip(transcript.nodes(), tree_conversations(transcript, task, layout, config,
                                                                           rename)):
        if len(node.turns) > config.max_steps_per_node or len(conversation) > config.context_window:
          cut_nodes += 1
          conversation = _engine_prefix(conversation, config)
        conversations.append(conversation)
  logging.info("sft: %d flat and %d delegating expert trees, %d node sequences (%d cut to the engine's "
               "limits)", trees_by_solver[False], trees_by_solver[True], len(conversations), cut_nodes)
  if skipped_trees:
    logging.warning("sft: left out %d trees the expert could not solve", skipped_trees)
  return conversations


def solve_task(task: Task, config: SFTDataConfig, delegate: bool) -> solvers.Transcript | None:
  """The flat or delegating expert's tree for `task` (on a fresh inventory), or None if it fails."""
  root = env_lib.make_root_environment(config.env_config, task.to_dict())
  try:
    transcript = solvers.solve(root, config.solver_config(delegate))
  except solvers.InfeasibleError:
    return None
  return transcript if transcript.success >= 1.0 else None


def tree_conversations(transcript: solvers.Transcript, task: Task, layout: ChatLayout, config: SFTDataConfig,
                       rename: Callable[[str], str] | None = None) -> list[Conversation]:
  """Every node of an expert tree (`transcript.nodes()` order) as the engine would render it, uncut."""
  root = env_lib.make_root_environment(config.env_config, task.to_dict())
  # As in the engine: a node at the depth cap sees no delegation (section and launch_subagent docs).
  parts_at = {may: root.prompt_parts(may) for may in (False, config.delegation)}
  conversations = []
  for node in transcript.nodes():
    may_delegate = config.delegation and node.depth < config.max_depth
    parts = dataclasses.replace(parts_at[may_delegate], goal=node.goal)
    conversations.append(node_conversation(node, parts, layout, delegation=may_delegate,
                                           step_budget=config.max_steps_per_node,
                                           prompt_style=config.prompt_style, rename=rename))
  return conversations


def _engine_prefix(conversation: Conversation, config: SFTDataConfig) -> Conversation:
  """The part of an expert node the engine could have produced: its first `max_steps_per_node` turns,
  cut at `context_window` tokens (a real node ends there with a step-limit or overflow error)."""
  turns_seen, end = 0, len(conversation)
  for index in range(1, len(conversation)):
    starts_turn = conversation.provenance[index] == Provenance.MODEL != conversation.provenance[index - 1]
    if starts_turn:
      turns_seen += 1
      if turns_seen > config.max_steps_per_node:
        end = index
        break
  cut = Conversation(conversation.ids[:end], conversation.provenance[:end], conversation.logprobs[:end])
  cut.truncate(config.context_window)
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
  return nnx.merge(graphdef, state.params), np.asarray(jax.device_get(losses), np.float32)
