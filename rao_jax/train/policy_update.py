"""One RAO policy update on a batch of execution trees, for any environment.

    trees ─► tree advantages (RAO Eq. 1, 3, 4; segment ops, jit) ─► nodes of groups with signal
          ─► packed [rows, T] micro-batches ─► one jitted, sharded optimiser step ─► new parameters

`PolicyUpdater` owns the train state (parameters and optimiser state) and the compiled train steps (one
per micro-batch count, shared by every updater of the process with the same graph, optimiser, step
config and mesh). The trainer calls it once per RAO step; the RL-learns tests call it directly with
the diagnostic environments.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rao_jax.rl.advantages import AdvantageConfig, advantages_from_trees
from rao_jax.rollout.trees import Trees
from rao_jax.train import packing
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer
from rao_jax.train.train_step import TrainState, TrainStepConfig, create_train_state, make_train_step

_COMPILED_STEPS: dict = {}  # (graphdef, optimizer, step config, mesh) -> compiled train step


@dataclasses.dataclass(frozen=True)
class UpdateConfig:
  """What one update computes.

  Attributes:
    advantage: node rewards, baselines and depth weights (`rl.advantages`).
    train_step: the loss and memory knobs; `num_micro_batches` is set per batch from the trees' size.
    optimizer: the optimiser of the policy's parameters.
    row_length: tokens per packed row (at least the context window: a node is one row at most).
    rows_per_micro_batch: rows per gradient-accumulation step; a batch takes as many as its nodes need.
  """

  advantage: AdvantageConfig
  train_step: TrainStepConfig
  optimizer: OptimizerConfig
  row_length: int
  rows_per_micro_batch: int

  def __post_init__(self):
    if self.row_length < 2 or self.rows_per_micro_batch < 1:
      raise ValueError(f"need row_length >= 2 and rows_per_micro_batch >= 1, got {self.row_length}, "
                       f"{self.rows_per_micro_batch}")


def _next_power_of_two(n: int) -> int:
  return 1 << max(0, n - 1).bit_length()


class PolicyUpdater:
  """The policy's train state and the RAO update that advances it (see the module docstring).

  Args:
    model: the policy; its parameters are copied into a fresh train state on `mesh`.
    config: `UpdateConfig`.
    mesh: the device mesh of the train state and the batches.
    vocab_limit: ids at or above it get probability 0 (the tokenizer's size when the model's
      vocabulary is padded), as in the sampler.
  """

  def __init__(self, model: nnx.Module, config: UpdateConfig, mesh: Mesh, *, vocab_limit: int | None = None):
    self.config = config
    self.mesh = mesh
    self.tx = make_optimizer(config.optimizer)
    self.graphdef, self.state = create_train_state(model, self.tx, mesh)
    self.step_config = dataclasses.replace(config.train_step, vocab_limit=vocab_limit)

  @property
  def params(self) -> nnx.State:
    return self.state.params

  def _compiled_step(self, num_micro_batches: int):
    config = dataclasses.replace(self.step_config, num_micro_batches=num_micro_batches)
    key = (self.graphdef, self.config.optimizer, config, self.mesh)
    if key not in _COMPILED_STEPS:
      _COMPILED_STEPS[key] = make_train_step(self.graphdef, self.state, self.tx, config, self.mesh)
    return _COMPILED_STEPS[key]

  def update(self, trees: Trees) -> dict[str, float]:
    """Advantages, packing and one optimiser step on `trees`; returns scalar metrics.

    Nodes of groups without reward variance, and nodes without a generated token, carry no loss; a
    batch with no such node leaves the state unchanged (`train/updated` = 0).
    """
    config = self.config
    advantages = advantages_from_trees(trees, config.advantage, pad_to=_next_power_of_two(trees.num_nodes))
    node_advantage, valid, reward = (np.asarray(x)[:trees.num_nodes] for x in jax.device_get(
        (advantages.advantage, advantages.valid, advantages.reward)))
    sequences = packing.trees_sequences(trees)
    kept = [i for i in np.flatnonzero(valid) if sequences[i][1].any()]
    metrics = {"adv/kept_node_fraction": len(kept) / max(1, trees.num_nodes),
               "adv/abs_mean": float(np.abs(node_advantage[kept]).mean()) if kept else 0.0,
               "adv/reward_mean": float(reward.mean())}
    if not kept:  # every group's trees scored alike: no signal, no update
      return {**metrics, "train/updated": 0.0, "train/skipped_nonfinite": 0.0}
    kept_sequences = [sequences[i] for i in kept]
    lengths = np.minimum([len(q[0]) for q in kept_sequences], config.row_length)
    rows_needed = int(packing.first_fit_decreasing(lengths, len(lengths), config.row_length).max()) + 1
    num_micro = math.ceil(rows_needed / config.rows_per_micro_batch)
    batch, stats = packing.pack_sequences(kept_sequences, num_micro * config.rows_per_micro_batch,
                                          config.row_length, node_advantages=node_advantage[kept])
    self.state, step_metrics = self._compiled_step(num_micro)(self.state, batch)
    step_metrics = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
    if step_metrics["skipped"]:
      logging.warning("non-finite loss (%s) or gradient norm (%s): the update was skipped",
                      step_metrics["loss"], step_metrics["grad_norm"])
    metrics.update({f"train/{k}": v for k, v in step_metrics.items() if k != "skipped"})
    metrics.update({"train/updated": 1.0 - step_metrics["skipped"],
                    "train/skipped_nonfinite": step_metrics["skipped"],
                    "train/micro_batches": float(num_micro), "train/pack_fill": stats.fill})
    return metrics
