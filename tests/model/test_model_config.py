"""ModelConfig validation, serialisation and presets."""
import dataclasses

import jax
import pytest
from flax import nnx

from rao_jax.errors import FieldError
from rao_jax.model.config import PRESETS, ModelConfig, get_preset
from rao_jax.model.transformer import Transformer

SMALL = dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
             intermediate_size=48)


@pytest.mark.parametrize("field, value, message", [
    ("num_heads", 6, "num_heads=6 is not divisible by num_kv_heads=4"),
    ("hidden_size", 0, "hidden_size=0 must be a positive integer"),
    ("vocab_size", 3.5, "vocab_size=3.5 must be a positive integer"),
    ("head_dim", 15, "head_dim=15 must be even"),
    ("rope_theta", -1.0, "rope_theta=-1.0 must be positive"),
    ("dtype", "float64", "dtype='float64' is not one of"),
    ("param_dtype", "int8", "param_dtype='int8' is not one of"),
])
def test_validation_errors_name_the_field(field, value, message):
  """An invalid config cannot be built at all (validated on construction), naming the field."""
  with pytest.raises(FieldError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
    dataclasses.replace(ModelConfig(**{**SMALL, "num_kv_heads": 4}), **{field: value})
  assert error.value.field == field


def test_dict_round_trip_and_unknown_keys():
  config = ModelConfig(**SMALL, tie_embeddings=True, dtype="bfloat16")
  assert ModelConfig.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match=r"unknown model config keys \['hiden_size'\]"):
    ModelConfig.from_dict({**config.to_dict(), "hiden_size": 3})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_hf_config(name):
  config = get_preset(name)
  assert config.validate() is config
  assert ModelConfig.from_hf_config(config.to_hf_config()) == config


def test_unknown_preset_lists_known_names():
  with pytest.raises(ValueError, match="unknown model preset 'qwen3_70b'.*'qwen3_4b'.*'tiny'"):
    get_preset("qwen3_70b")


def test_published_qwen3_shapes():
  # Parameter counts of the published checkpoints (tied embeddings counted once).
  expected = {"qwen3_0_6b": 596_049_920, "qwen3_1_7b": 1_720_574_976, "qwen3_4b": 4_022_468_096,
              "qwen3_8b": 8_190_735_360}
  for name, count in expected.items():
    config = get_preset(name)
    assert config.num_params == count, name
    assert (config.vocab_size, config.head_dim, config.num_kv_heads, config.rope_theta) == (151_936, 128, 8, 1e6)
    assert config.tie_embeddings == (name != "qwen3_8b")
  assert 2e6 < get_preset("tiny").num_params < 8e6
  assert 30e6 < get_preset("small").num_params < 60e6


@pytest.mark.parametrize("tie", [True, False])
def test_num_params_counts_the_module(tie):
  config = ModelConfig(**SMALL, tie_embeddings=tie)
  model = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
  assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == config.num_params


def test_from_hf_config_rejects_unsupported():
  hf = ModelConfig(**SMALL).to_hf_config()
  with pytest.raises(ValueError, match="rope_scaling"):
    ModelConfig.from_hf_config({**hf, "rope_scaling": {"type": "yarn", "factor": 4.0}})
  with pytest.raises(ValueError, match="use_sliding_window"):
    ModelConfig.from_hf_config({**hf, "use_sliding_window": True})
  with pytest.raises(ValueError, match=r"missing keys \['hidden_size'\]"):
    ModelConfig.from_hf_config({k: v for k, v in hf.items() if k != "hidden_size"})


def test_rope_theta_from_either_transformers_layout():
  base = {"model_type": "qwen3", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48}
  assert ModelConfig.from_hf_config({**base, "rope_theta": 5e5}).rope_theta == 5e5          # transformers 4.x
  assert ModelConfig.from_hf_config(
      {**base, "rope_parameters": {"rope_theta": 2e5, "rope_type": "default"}}).rope_theta == 2e5  # 5.x
  with pytest.raises(ValueError, match="rope_type"):
    ModelConfig.from_hf_config({**base, "rope_parameters": {"rope_theta": 1e6, "rope_type": "yarn"}})
  exported = ModelConfig.from_hf_config({**base, "rope_theta": 3e5}).to_hf_config()
  assert ModelConfig.from_hf_config(exported).rope_theta == 3e5
