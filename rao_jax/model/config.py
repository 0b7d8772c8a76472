"""Model configuration for the Qwen3 dense decoder family, and named presets."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

_DTYPE_NAMES = ("float32", "bfloat16", "float16")

# Hugging Face config keys whose values we accept as long as they match what this implementation computes.
_HF_FIXED_VALUES = {
    "hidden_act": "silu",
    "attention_bias": False,
    "use_sliding_window": False,
    "rope_scaling": None,
}

from rao_jax.errors import FieldError


def _hf_rope_theta(hf: Mapping[str, Any]) -> float:
  """RoPE base of a config.json: top-level `rope_theta` (transformers 4.x) or `rope_parameters` (5.x)."""
  parameters = hf.get("rope_parameters") or {}
  rope_type = parameters.get("rope_type", "default")
  if rope_type != "default":
    raise ValueError(f"unsupported Hugging Face config rope_parameters.rope_type={rope_type!r}; "
                     "only 'default' RoPE is supported")
  theta = hf.get("rope_theta") or parameters.get("rope_theta") or 10_000.0
  return float(theta)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shapes and numerics of a Qwen3-style decoder.

  `param_dtype` is the storage dtype of the parameters and `dtype` the compute dtype of activations;
  RMSNorm statistics, RoPE and softmax are always computed in float32 and logits are returned in float32.
  """
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  intermediate_size: int
  rope_theta: float = 1_000_000.0
  rms_norm_eps: float = 1e-6
  tie_embeddings: bool = False
  param_dtype: str = "float32"
  dtype: str = "float32"

  def __post_init__(self):
    self.validate()

  def validate(self) -> ModelConfig:
    """Returns `self` if every field is consistent; raises ValueError naming the first bad field."""
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                 "intermediate_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FieldError(name, value, "must be a positive integer")
    if self.num_heads % self.num_kv_heads:
      raise FieldError("num_heads", self.num_heads, f"is not divisible by num_kv_heads={self.num_kv_heads}")
    if self.head_dim % 2:
      raise FieldError("head_dim", self.head_dim, "must be even (RoPE rotates pairs of features)")
    if not self.rope_theta > 0:
      raise FieldError("rope_theta", self.rope_theta, "must be positive")
    if not self.rms_norm_eps > 0:
      raise FieldError("rms_norm_eps", self.rms_norm_eps, "must be positive")
    if not isinstance(self.tie_embeddings, bool):
      raise FieldError("tie_embeddings", self.tie_embeddings, "must be a bool")
    for name in ("param_dtype", "dtype"):
      value = getattr(self, name)
      if value not in _DTYPE_NAMES:
        raise FieldError(name, value, f"is not one of {_DTYPE_NAMES}")
    return self

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  @property
  def num_params(self) -> int:
    """Number of parameters (the tied embedding counted once)."""
    h, d = self.hidden_size, self.head_dim
    attention = h * d * (2 * self.num_heads + 2 * self.num_kv_heads) + 2 * d
    mlp = 3 * h * self.intermediate_size
    per_layer = attention + mlp + 2 * h
    embeddings = self.vocab_size * h * (1 if self.tie_embeddings else 2)
    return self.num_layers * per_layer + embeddings + h

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
    """Builds a validated config from a mapping of field names; unknown keys raise ValueError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
    return cls(**dict(d)).validate()

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_hf_config(cls, hf: Mapping[str, Any]) -> ModelConfig:
    """Reads a Hugging Face `Qwen3ForCausalLM` config.json mapping.

    The parameter dtype follows the checkpoint's `torch_dtype`/`dtype` when it is one we support.
    Raises ValueError for other architectures and for features this decoder does not implement.
    """
    architectures = hf.get("architectures") or []
    model_type = hf.get("model_type")
    if model_type != "qwen3" and "Qwen3ForCausalLM" not in architectures:
      raise ValueError(f"unsupported architecture: model_type={model_type!r}, architectures={architectures!r}; "
                       "only Qwen3ForCausalLM (model_type 'qwen3') is supported")
    for key, expected in _HF_FIXED_VALUES.items():
      if hf.get(key, expected) != expected:
        raise ValueError(f"unsupported Hugging Face config {key}={hf[key]!r}; only {expected!r} is supported")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size") if k not in hf]
    if missing:
      raise ValueError(f"Hugging Face config is missing keys {missing}")
    num_heads = hf["num_attention_heads"]
    hf_dtype = hf.get("torch_dtype") or hf.get("dtype") or "float32"
    return cls(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=hf.get("num_key_value_heads") or num_heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
        intermediate_size=hf["intermediate_size"],
        rope_theta=_hf_rope_theta(hf),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        param_dtype=hf_dtype if hf_dtype in _DTYPE_NAMES else "float32",
        dtype=hf_dtype if hf_dtype in _DTYPE_NAMES else "float32",
    ).validate()

  def to_hf_config(self) -> dict[str, Any]:
    """The config.json mapping that `transformers.Qwen3ForCausalLM` loads into the same model."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "intermediate_size": self.intermediate_size,
        "rope_theta": self.rope_theta,  # read by transformers 4.x
        "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},  # transformers >= 5
        "rms_norm_eps": self.rms_norm_eps,
        "tie_word_embeddings": self.tie_embeddings,
        "torch_dtype": self.param_dtype,
        "max_position_embeddings": 40_960,
        "layer_types": ["full_attention"] * self.num_layers,
        **_HF_FIXED_VALUES,
    }


def _qwen3(hidden: int, layers: int, heads: int, intermediate: int, tie: bool) -> ModelConfig:
  """A published Qwen3 dense shape (vocab 151936, 8 KV heads of dim 128, RoPE theta 1e6), bfloat16."""
  return ModelConfig(vocab_size=151_936, hidden_size=hidden, num_layers=layers, num_heads=heads,
                     num_kv_heads=8, head_dim=128, intermediate_size=intermediate, rope_theta=1_000_000.0,
                     rms_norm_eps=1e-6, tie_embeddings=tie, param_dtype="bfloat16", dtype="bfloat16")


PRESETS: dict[str, ModelConfig] = {
    # CPU toy for tests and end-to-end runs (about 4.2M parameters).
    "tiny": ModelConfig(vocab_size=4096, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2,
                        head_dim=64, intermediate_size=768, tie_embeddings=True),
    # CPU "mid-size" for benchmarks (about 36M parameters).
    "small": ModelConfig(vocab_size=8192, hidden_size=512, num_layers=10, num_heads=8, num_kv_heads=4,
                         head_dim=64, intermediate_size=1536, tie_embeddings=True),
    "qwen3_0_6b": _qwen3(hidden=1024, layers=28, heads=16, intermediate=3072, tie=True),
    "qwen3_1_7b": _qwen3(hidden=2048, layers=28, heads=16, intermediate=6144, tie=True),
    "qwen3_4b": _qwen3(hidden=2560, layers=36, heads=32, intermediate=9728, tie=True),
    "qwen3_8b": _qwen3(hidden=4096, layers=36, heads=32, intermediate=12288, tie=False),
}


def get_preset(name: str) -> ModelConfig:
  """Returns the named preset; unknown names raise ValueError listing the known ones."""
  if name not in PRESETS:
    raise ValueError(f"unknown model preset {name!r}; known presets are {sorted(PRESETS)}")
  return PRESETS[name]
