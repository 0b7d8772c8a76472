"""The decode loop updates the KV cache in place: its compiled program makes no buffer as large as one
layer of the cache (`rao_jax.hlo_inspect`), so a step reads each layer's keys and values once instead of
copying them first. With the cache stacked as one [layers, ...] array, CPU XLA materialised every
layer's slice every step (and copied the whole cache at S = 1); with per-layer [B, K, T, D] buffers
written through `buffer.at[rows, :, slots]`, it copied every buffer every step at S = 1."""
import jax
import numpy as np
import pytest
from flax import nnx

from rao_jax import hlo_inspect
from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import PrefixTable
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.decode_state import DecodeState
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.sampling import SamplingConfig

CONFIG = ModelConfig(vocab_size=64, hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, head_dim=8,
                     intermediate_size=64)


@pytest.mark.parametrize("num_slots, window, shared", [(1, 256, 0), (8, 128, 0), (8, 256, 32)])
def test_decode_program_makes_no_cache_sized_buffer(num_slots, window, shared):
  """Also with shared prompt prefixes (cascade attention: a [K, 64, D] table read by every slot)."""
  model = Transformer(CONFIG, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  program = DeviceProgram(graphdef, SamplingConfig(temperature=1.0), CONFIG.vocab_size)
  prefixes = PrefixTable.init(CONFIG, 2 * shared) if shared else None
  state = DecodeState.init(CONFIG, num_slots, window, 16, jax.random.key(0), prefixes=prefixes,
                           shared_positions=shared)
  compiled = program.decode.lower(params, state, np.full((1, 1), -1, np.int32), np.int32(4),
                                  np.int32(num_slots + 1)).compile()
  layer_bytes = state.cache.k[0].nbytes
  assert hlo_inspect.large_materialisations(compiled.as_text(), layer_bytes) == []


def test_only_scheduled_code_is_read():
  """Instructions inside fused computations are not buffers; a fusion rooted in a dynamic-update-slice
  updates in place; anything else of the size counts."""
  hlo = """HloModule m

%fused_body (p0: f32[8,8]) -> f32[8,8] {
  %p0 = f32[8,8]{1,0} parameter(0)
  ROOT %mul.1 = f32[8,8]{1,0} multiply(%p0, %p0)
}

%dus_body (p0: f32[8,8], p1: f32[1,8], p2: s32[]) -> f32[8,8] {
  %p0 = f32[8,8]{1,0} parameter(0)
  ROOT %dynamic-update-slice.1 = f32[8,8]{1,0} dynamic-update-slice(%p0, %p1, %p2, %p2)
}

ENTRY %main (x: f32[8,8], y: f32[1,8], i: s32[]) -> f32[8,8] {
  %x = f32[8,8]{1,0} parameter(0)
  %in_place = f32[8,8]{1,0} fusion(%x, %y, %i), kind=kLoop, calls=%dus_body
  %square = f32[8,8]{1,0} fusion(%in_place), kind=kLoop, calls=%fused_body
  %small = f32[2,2]{1,0} slice(%square), slice={[0:2], [0:2]}
  ROOT %copy.3 = f32[8,8]{1,0} copy(%square)
}
"""
  found = hlo_inspect.large_materialisations(hlo, 8 * 8 * 4)
  assert [(m.name, m.op) for m in found] == [("square", "fusion:fused_body"), ("copy.3", "copy")]
