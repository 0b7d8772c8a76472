"""One RAO policy update: packing only the nodes with signal against packing every node and masking the
rest inside the step (both compute the same update; `PolicyUpdater` does the first).

    python scripts/bench_policy_update.py            # 6 forests per case, 3 timed repeats
    python scripts/bench_policy_update.py --quick

Each case is a batch of forests (groups of G trees of 1 to 6 nodes, 16 to 120 tokens each) in which a
given fraction of the groups has no reward variance (all trees of the group succeed or all fail), as late
or early in training. For each, the table gives the micro-batches and the median time of advantages +
packing + train step (steps compiled beforehand), and the ratio of the masking path to ours, measured in
the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from rao_jax import host_memory
from rao_jax.model.config import ModelConfig
from rao_jax.model.random_init import random_normal_model
from rao_jax.rl.advantages import AdvantageConfig, advantages_from_trees
from rao_jax.rollout.trees import Trees, concatenate_sequences
from rao_jax.sharding import make_mesh
from rao_jax.train import packing
from rao_jax.train.optimizer import OptimizerConfig
from rao_jax.train.policy_update import PolicyUpdater, UpdateConfig, _padded_node_count
from rao_jax.train.train_step import TrainStepConfig

MODEL = ModelConfig(vocab_size=512, hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                    intermediate_size=384, tie_embeddings=True)
ROW_LENGTH, ROWS_PER_MICRO_BATCH, GROUP_SIZE = 256, 8, 8


def random_forest(num_groups: int, idle_fraction: float, seed: int) -> Trees:
  """num_groups × GROUP_SIZE trees; the first `idle_fraction` of the groups score alike (no signal)."""
  rng = np.random.default_rng(seed)
  sequences, tree, group, parent, depth, success = [], [], [], [], [], []
  for g in range(num_groups):
    idle = g < round(idle_fraction * num_groups)
    for t in range(GROUP_SIZE):
      tree_id, root = g * GROUP_SIZE + t, len(sequences)
      for n in range(int(rng.integers(1, 7))):
        length = int(rng.integers(16, 121))
        mask = np.zeros(length, bool)
        mask[length // 3:] = True
        sequences.append((rng.integers(0, MODEL.vocab_size, length).astype(np.int32), mask,
                          np.where(mask, -1.0, 0.0).astype(np.float32)))
        tree.append(tree_id)
        group.append(g)
        parent.append(-1 if n == 0 else root)
        depth.append(0 if n == 0 else 1)
        success.append(float(g % 2) if idle else float(rng.random() < 0.5) if n == 0 or t % 2 else 1.0)
  offsets, tokens, loss_mask, log_probs = concatenate_sequences(sequences)
  n = len(sequences)
  parent = np.asarray(parent, np.int32)
  children = np.bincount(parent[parent >= 0], minlength=n).astype(np.int32)
  zeros = np.zeros(n, np.int32)
  return Trees(tree=np.asarray(tree, np.int32), group=np.asarray(group, np.int32), parent=parent,
               depth=np.asarray(depth, np.int32), success=np.asarray(success, np.float32),
               num_children=children, launch_cell=np.where(parent >= 0, 1, -1).astype(np.int32),
               end_reason=zeros, steps=zeros + 1, tokens_generated=np.asarray([m.sum() for _, m, _ in sequences],
                                                                              np.int32),
               first_round=zeros, last_round=zeros, first_step=zeros.astype(np.int64),
               last_step=zeros.astype(np.int64), token_offsets=offsets, tokens=tokens, loss_mask=loss_mask,
               sampler_log_probs=log_probs)


def one_update(updater: PolicyUpdater, trees: Trees, *, pack_idle: bool) -> int:
  """Advantages, packing (with or without the idle nodes) and one step; returns the micro-batch count."""
  advantages = advantages_from_trees(trees, updater.config.advantage, pad_to=_padded_node_count(trees.num_nodes))
  keep = None if pack_idle else np.asarray(jax.device_get(advantages.valid))[:trees.num_nodes]
  batch, _ = packing.pack_blocks(packing.trees_sequences(trees, keep=keep), ROWS_PER_MICRO_BATCH, ROW_LENGTH)
  num_micro = batch.num_rows // ROWS_PER_MICRO_BATCH
  updater.state, metrics = updater._compiled_step(num_micro)(updater.state, batch, advantages.advantage,
                                                             advantages.valid)
  jax.block_until_ready(metrics)
  return num_micro


def main() -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="3 forests per case, 2 timed repeats")
  args = parser.parse_args()
  forests, repeats = (3, 2) if args.quick else (6, 3)
  config = UpdateConfig(advantage=AdvantageConfig(), train_step=TrainStepConfig(loss="cispo"),
                        optimizer=OptimizerConfig(learning_rate=1e-4), row_length=ROW_LENGTH,
                        rows_per_micro_batch=ROWS_PER_MICRO_BATCH)
  updater = PolicyUpdater(random_normal_model(MODEL, seed=0), config, make_mesh())
  print(f"model {MODEL.num_params / 1e6:.1f}M params, rows of {ROW_LENGTH}, {ROWS_PER_MICRO_BATCH} rows per "
        f"micro-batch, 8 groups × G={GROUP_SIZE}; median of {forests} forests × {repeats} repeats\n")
  print("| groups without variance | packed nodes | micro-batches | update ms | ratio to ours |")
  print("|---|---|---|---|---|")
  for idle_fraction in (0.0, 0.5, 0.75):
    rows = {}
    for pack_idle in (False, True):
      times, micro = [], []
      for seed in range(forests):
        trees = random_forest(8, idle_fraction, seed)
        one_update(updater, trees, pack_idle=pack_idle)  # compiles this micro-batch count once
        for _ in range(repeats):
          start = time.perf_counter()
          micro.append(one_update(updater, trees, pack_idle=pack_idle))
          times.append(time.perf_counter() - start)
      rows[pack_idle] = (statistics.median(micro), 1e3 * statistics.median(times))
    for pack_idle, name in ((False, "with signal (ours)"), (True, "all, idle masked in the step")):
      micro, ms = rows[pack_idle]
      print(f"| {idle_fraction:.0%} | {name} | {micro:.0f} | {ms:.0f} | {ms / rows[False][1]:.2f} |")


if __name__ == "__main__":
  main()
