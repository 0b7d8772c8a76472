"""`rao_jax.roofline`: the bytes and FLOPs each program must move and compute, by hand on a small model,
and the floor and bound they give on a machine."""
import dataclasses

import pytest

from rao_jax import roofline
from rao_jax.model.config import ModelConfig

# 2 layers, hidden 8, 2 query heads and 1 KV head of 4, MLP 16, vocabulary 32, tied embeddings.
CONFIG = ModelConfig(vocab_size=32, hidden_size=8, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4,
                     intermediate_size=16, tie_embeddings=True)


def test_decode_step_reads_every_weight_and_each_slots_window():
  p = CONFIG.num_params
  cost = roofline.decode_step_cost(CONFIG, [10, 30])
  # keys and values: 2 (k, v) x 2 layers x 1 KV head x 4 dims x 4 bytes = 64 bytes a position.
  assert cost.bytes == 4 * p + 64 * (10 + 30)
  # 2 FLOPs per weight per slot; scores and values: 4 x 2 layers x 2 heads x 4 dims = 64 a position.
  assert cost.flops == 2 * p * 2 + 64 * (10 + 30)
  half = roofline.decode_step_cost(CONFIG, [10, 30], cache_dtype="bfloat16")
  assert half.bytes == 4 * p + 32 * 40 and half.flops == cost.flops
  # A shared prefix of 100 positions is read once, but both slots' queries attend to it.
  shared = roofline.decode_step_cost(CONFIG, [10, 30], shared_positions=100)
  assert shared.bytes == cost.bytes + 64 * 100
  assert shared.flops == cost.flops + 64 * 100 * 2


def test_untied_input_embedding_is_not_a_matmul():
  untied = dataclasses.replace(CONFIG, tie_embeddings=False)
  assert roofline.matmul_params(untied) == untied.num_params - 32 * 8
  assert roofline.matmul_params(CONFIG) == CONFIG.num_params


def test_prefill_and_train_step_costs():
  p = CONFIG.num_params
  prefill = roofline.prefill_cost(CONFIG, rows=3, chunk=5, window=20)
  assert prefill.bytes == 4 * p + 64 * 3 * (20 + 5)
  assert prefill.flops == 2 * p * 15 + 64 * 15 * 20
  train = roofline.train_step_cost(CONFIG, rows=2, row_length=6)
  # 6 FLOPs per weight per token, and 12 x layers x heads x head_dim x T per token of attention.
  assert train.flops == 12 * (6 * p + 12 * 2 * 2 * 4 * 6)
  assert train.bytes == 16 * p


def test_floor_is_the_slower_of_the_two_limits():
  machine = roofline.Machine(bandwidth=1e9, matmul_peak=1e12)
  memory_bound = roofline.Cost(bytes=2e9, flops=1e12)
  assert memory_bound.floor_s(machine) == pytest.approx(2.0) and memory_bound.bound(machine) == "memory"
  compute_bound = roofline.Cost(bytes=1e9, flops=3e12)
  assert compute_bound.floor_s(machine) == pytest.approx(3.0) and compute_bound.bound(machine) == "compute"


def test_machine_measurements_are_positive_and_finite():
  machine = roofline.measure_machine(megabytes=8, matmul_size=128, repeats=2)
  assert 1e7 < machine.bandwidth < 1e14 and 1e7 < machine.matmul_peak < 1e16
  assert "GB/s" in machine.describe() and "GFLOP/s" in machine.describe()
