"""One RAO policy update on a batch of execution trees, for any environment.

    trees ─► node advantages A [P], valid [P] (RAO Eq. 1, 3, 4; segment ops, jit; on device)
          ─► valid nodes with a generated token packed once into [rows, T] with node_index (host)
          ─► one jitted, sharded optimiser step (A_t = A[node_index_t], gathered on device)
          ─► new parameters; the step's and the advantages' metrics fetched in one `device_get`

The advantages never leave the device. The one array fetched before the step is `valid` ([P] bool:
which nodes belong to a group with reward variance), so that nodes without signal are not packed: they
would carry no loss, but a batch late in training (most groups solved) or early (most failed) can be
half such nodes, and packing them nearly doubled the update's time (240 ms instead of 128 ms with half
the groups without variance; docs/performance.md). The step masks invalid nodes' tokens as well, so its
loss is right whatever it is given.

`PolicyUpdater` owns the train state (parameters and optimiser state) and the compiled train steps (one
per micro-batch count, shared by every updater of the process with the same graph, optimiser, step
config and mesh; each compiles once per padded node count P, a power of two of at least 1024). The
trainer calls it once per RAO step; the RL-learns tests call it directly with the diagnostic
environments.
"""
from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rao_jax.rl.advantages import AdvantageConfig, BadRewardError, NodeAdvantages, advantages_from_trees
from rao_jax.rollout.trees import Trees
from rao_jax.train import packing
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer
from rao_jax.train.train_step import TrainStepConfig, create_train_state, make_train_step

_COMPILED_STEPS: dict = {}  # (graphdef, optimizer, step config, mesh) -> compiled train step


@dataclasses.dataclass(frozen=True)
class UpdateConfig:
  """What one update computes.

  Attributes:
    advantage: node rewards, baselines and depth weights (`rl.advantages`).
    train_step: the loss and memory knobs; `num_micro_batches` is set per batch from the trees' size.
    optimizer: the optimiser of the policy's parameters.
    row_length: tokens per packed row (at least the context window: a node is one row at most).
    rows_per_micro_batch: rows per gradient-accumulation step; a batch takes as many micro-batches as its
      nodes with a generated token need.
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


# Node arrays are padded to P = the next power of two >= max(N, this): 4 bytes a node cost nothing, and
# the train step compiles once per (micro-batch count, P), so batches of up to this many nodes share one P.
_MIN_PADDED_NODES = 1024


def _padded_node_count(n: int) -> int:
  return 1 << max(_MIN_PADDED_NODES - 1, n - 1).bit_length()


@jax.jit
def _advantage_metrics(advantages: NodeAdvantages, packed: jax.Array, num_nodes: int) -> dict[str, jax.Array]:
  """Kept-node fraction, mean |A| over kept nodes and mean reward over the N real nodes, on device.

  A node is kept when it is valid and was packed (has a generated token). advantages: [P] fields;
  packed: [P] bool; num_nodes: N <= P (traced: one program per P).
  """
  kept = advantages.valid & packed  # [P]
  num_kept = jnp.sum(kept)
  real = jnp.arange(packed.shape[0]) < num_nodes  # [P]
  abs_sum = jnp.sum(jnp.where(kept, jnp.abs(advantages.advantage), 0.0))
  return {"adv/kept_node_fraction": num_kept / num_nodes,
          "adv/abs_mean": abs_sum / jnp.maximum(num_kept, 1),
          "adv/reward_mean": jnp.sum(jnp.where(real, advantages.reward, 0.0)) / num_nodes}


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
    batch with no other node leaves the parameters and optimiser state unchanged (`train/updated` = 0).
    So does a batch whose successes are not all finite numbers in [0, 1] (`train/skipped_bad_reward`
    = 1, logged): no train step runs on it, so `TrainState.step` does not advance either (the trainer's
    step does: it counts RL batches, skipped ones included). A malformed forest raises ValueError.
    """
    config = self.config
    try:
      advantages = advantages_from_trees(trees, config.advantage, pad_to=_padded_node_count(trees.num_nodes))
    except BadRewardError as error:
      logging.warning("bad rewards, the update was skipped: %s", error)
      return {"train/updated": 0.0, "train/skipped_nonfinite": 0.0, "train/skipped_bad_reward": 1.0}
    valid = np.asarray(jax.device_get(advantages.valid))[:trees.num_nodes]  # [N] bool, the one fetch
    batch, stats = packing.pack_blocks(packing.trees_sequences(trees, keep=valid), config.rows_per_micro_batch,
                                       config.row_length)
    num_micro = batch.num_rows // config.rows_per_micro_batch
    packed = np.zeros(advantages.advantage.shape, bool)  # [P]
    packed[batch.node_index[batch.node_index >= 0]] = True
    self.state, step_metrics = self._compiled_step(num_micro)(self.state, batch, advantages.advantage,
                                                              advantages.valid)
    adv_metrics = _advantage_metrics(advantages, packed, trees.num_nodes)
    step_metrics, adv_metrics = jax.device_get((step_metrics, adv_metrics))
    step_metrics = {k: float(v) for k, v in step_metrics.items()}
    if step_metrics["skipped"]:
      logging.warning("non-finite loss (%s) or gradient norm (%s): the update was skipped",
                      step_metrics["loss"], step_metrics["grad_norm"])
    return {**{k: float(v) for k, v in adv_metrics.items()},
            **{f"train/{k}": v for k, v in step_metrics.items() if k not in ("skipped", "updated")},
            "train/updated": step_metrics["updated"], "train/skipped_nonfinite": step_metrics["skipped"],
            "train/skipped_bad_reward": 0.0, "train/micro_batches": float(num_micro),
            "train/pack_fill": stats.fill}
