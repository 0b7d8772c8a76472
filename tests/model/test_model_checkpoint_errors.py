"""Clear errors for missing, corrupt, incomplete and mis-shaped checkpoints."""
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rao_jax.model import hf_checkpoint
from rao_jax.model.hf_checkpoint import load_hf_checkpoint


@pytest.fixture
def checkpoint_copy(tied_checkpoint, tmp_path):
  path = tmp_path / "checkpoint"
  shutil.copytree(tied_checkpoint.path, path)
  return path


def _rewrite_tensors(path, edit):
  file = path / hf_checkpoint.SINGLE_FILE
  tensors = load_file(file)
  edit(tensors)
  save_file(tensors, file, metadata={"format": "pt"})


def test_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
    load_hf_checkpoint(tmp_path / "nowhere")


def test_missing_config(checkpoint_copy):
  (checkpoint_copy / "config.json").unlink()
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_hf_checkpoint(checkpoint_copy)


def test_corrupt_config(checkpoint_copy):
  (checkpoint_copy / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    load_hf_checkpoint(checkpoint_copy)


def test_missing_weights(checkpoint_copy):
  (checkpoint_copy / hf_checkpoint.SINGLE_FILE).unlink()
  with pytest.raises(FileNotFoundError, match="safetensors"):
    load_hf_checkpoint(checkpoint_copy)


def test_corrupt_weights_file(checkpoint_copy):
  (checkpoint_copy / hf_checkpoint.SINGLE_FILE).write_bytes(b"\x00garbage" * 10)
  with pytest.raises(ValueError, match="cannot read safetensors file .*model.safetensors"):
    load_hf_checkpoint(checkpoint_copy)


def test_missing_tensor_is_named(checkpoint_copy):
  _rewrite_tensors(checkpoint_copy, lambda t: t.pop("model.layers.1.self_attn.k_norm.weight"))
  with pytest.raises(ValueError, match=r"missing tensors \[model\.layers\.1\.self_attn\.k_norm\.weight\]"):
    load_hf_checkpoint(checkpoint_copy)


def test_misshaped_tensor_is_named(checkpoint_copy):
  def transpose_gate(tensors):
    name = "model.layers.0.mlp.gate_proj.weight"
    tensors[name] = np.ascontiguousarray(tensors[name].T)
  _rewrite_tensors(checkpoint_copy, transpose_gate)
  with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight .* shape \(32, 64\), "
                                       r"expected \(64, 32\)"):
    load_hf_checkpoint(checkpoint_copy)


def test_unexpected_tensor_is_named(checkpoint_copy):
  def add_bias(tensors):
    tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros(32, np.float32)
  _rewrite_tensors(checkpoint_copy, add_bias)
  with pytest.raises(ValueError, match=r"does not use: \[model\.layers\.0\.self_attn\.q_proj\.bias\]"):
    load_hf_checkpoint(checkpoint_copy)


def test_unsupported_architecture(checkpoint_copy):
  config = json.loads((checkpoint_copy / "config.json").read_text())
  config.update(model_type="llama", architectures=["LlamaForCausalLM"])
  (checkpoint_copy / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="unsupported architecture.*LlamaForCausalLM"):
    load_hf_checkpoint(checkpoint_copy)


def test_unsupported_feature(checkpoint_copy):
  config = json.loads((checkpoint_copy / "config.json").read_text())
  config["attention_bias"] = True
  (checkpoint_copy / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="attention_bias"):
    load_hf_checkpoint(checkpoint_copy)


def test_index_naming_a_missing_shard(gqa_checkpoint, tmp_path):
  path = tmp_path / "checkpoint"
  shutil.copytree(gqa_checkpoint.path, path)
  shard = sorted(path.glob("model-*.safetensors"))[-1]
  shard.unlink()
  with pytest.raises(FileNotFoundError, match=shard.name):
    load_hf_checkpoint(path)


def test_bad_shard_size(tied_checkpoint, tmp_path):
  model, config = load_hf_checkpoint(tied_checkpoint.path)
  with pytest.raises(ValueError, match="max_shard_bytes"):
    hf_checkpoint.save_hf_checkpoint(model, config, tmp_path, max_shard_bytes=0)
