"""Qwen3-family decoder in Flax NNX: config, KV cache, forward, Hugging Face checkpoints (sampling:
`rao_jax.rollout.generate`)."""
from rao_jax.model.config import PRESETS, ModelConfig, get_preset
from rao_jax.model.hf_checkpoint import load_hf_checkpoint, save_hf_checkpoint
from rao_jax.model.kv_cache import CACHE_LOGICAL_AXES, KVCache
from rao_jax.model.transformer import Transformer

__all__ = [
    "CACHE_LOGICAL_AXES",
    "KVCache",
    "ModelConfig",
    "PRESETS",
    "Transformer",
    "get_preset",
    "load_hf_checkpoint",
    "save_hf_checkpoint",
]
