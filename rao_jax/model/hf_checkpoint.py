"""Import and export of Hugging Face `Qwen3ForCausalLM` checkpoints (config.json + safetensors).

Hugging Face stores linear weights as torch `[out, in]` matrices with heads flattened into the feature
axis; we store `[in, ..., out]` with heads as their own axis. `_tensor_layouts` is the single table of that
correspondence, used in both directions.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# Tensors some checkpoints carry that hold nothing we need (RoPE tables are recomputed).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class _TensorLayout:
  """One parameter: where it lives in our state, its Hugging Face name, and how to convert between them."""
  path: tuple[str | int, ...]
  hf_name: str
  hf_shape: tuple[int, ...]
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]


def _identity(x: np.ndarray) -> np.ndarray:
  return x


def _tensor_layouts(config: ModelConfig) -> list[_TensorLayout]:
  h, n, k, d, i = (config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim,
                   config.intermediate_size)

  def in_proj(heads: int) -> dict:  # torch [heads * D, H] <-> ours [H, heads, D]
    return dict(hf_shape=(heads * d, h), to_ours=lambda w: w.T.reshape(h, heads, d),
                to_hf=lambda w: w.reshape(h, heads * d).T)

  transpose = dict(to_ours=np.transpose, to_hf=np.transpose)
  layouts = [_TensorLayout(("embed", "table"), "model.embed_tokens.weight", (config.vocab_size, h),
                           _identity, _identity),
             _TensorLayout(("final_norm", "scale"), "model.norm.weight", (h,), _identity, _identity)]
  if not config.tie_embeddings:
    layouts.append(_TensorLayout(("lm_head", "kernel"), "lm_head.weight", (config.vocab_size, h), **transpose))
  for layer in range(config.num_layers):
    ours = lambda *p: ("layers", layer, *p)
    hf = f"model.layers.{layer}."
    layouts += [
        _TensorLayout(ours("input_norm", "scale"), hf + "input_layernorm.weight", (h,), _identity, _identity),
        _TensorLayout(ours("post_attention_norm", "scale"), hf + "post_attention_layernorm.weight", (h,),
                      _identity, _identity),
        _TensorLayout(ours("attention", "q_proj"), hf + "self_attn.q_proj.weight", **in_proj(n)),
        _TensorLayout(ours("attention", "k_proj"), hf + "self_attn.k_proj.weight", **in_proj(k)),
        _TensorLayout(ours("attention", "v_proj"), hf + "self_attn.v_proj.weight", **in_proj(k)),
        _TensorLayout(ours("attention", "o_proj"), hf + "self_attn.o_proj.weight", (h, n * d),
                      to_ours=lambda w: w.T.reshape(n, d, h), to_hf=lambda w: w.reshape(n * d, h).T),
        _TensorLayout(ours("attention", "q_norm", "scale"), hf + "self_attn.q_norm.weight", (d,),
                      _identity, _identity),
        _TensorLayout(ours("attention", "k_norm", "scale"), hf + "self_attn.k_norm.weight", (d,),
                      _identity, _identity),
        _TensorLayout(ours("mlp", "gate"), hf + "mlp.gate_proj.weight", (i, h), **transpose),
        _TensorLayout(ours("mlp", "up"), hf + "mlp.up_proj.weight", (i, h), **transpose),
        _TensorLayout(ours("mlp", "down"), hf + "mlp.down_proj.weight", (h, i), **transpose),
    ]
  return layouts


def load_hf_checkpoint(path: str | os.PathLike, *, dtype: str | None = None, param_dtype: str | None = None,
                       rngs: nnx.Rngs | None = None) -> tuple[Transformer, ModelConfig]:
  """Builds a `Transformer` from a Hugging Face Qwen3 checkpoint directory.

  Reads config.json and the weights from model.safetensors, a sharded set listed in
  model.safetensors.index.json, or the *.safetensors files present. `dtype` overrides the compute dtype
  and, unless `param_dtype` is given, the parameter dtype too (default: the checkpoint's); `param_dtype`
  overrides the parameter dtype alone (e.g. float32 master weights for training a bfloat16 checkpoint
  with bfloat16 compute). The module is built abstractly (no random init): no
  values are drawn from `rngs`, which may be omitted. Raises FileNotFoundError for
  missing files and ValueError for corrupt files, unsupported architectures, and missing, unexpected or
  mis-shaped tensors (named in the message).
  """
  directory = pathlib.Path(path)
  if not directory.is_dir():
    raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
  config = ModelConfig.from_hf_config(_read_json(directory / CONFIG_FILE))
  if dtype is not None:
    config = dataclasses.replace(config, param_dtype=dtype, dtype=dtype)
  if param_dtype is not None:
    config = dataclasses.replace(config, param_dtype=param_dtype)
  config = config.validate()
  tensors = _CheckpointReader(directory)
  layouts = _tensor_layouts(config)

  expected = {layout.hf_name for layout in layouts}
  missing = sorted(expected - tensors.names)
  if missing:
    raise ValueError(f"checkpoint {directory} is missing tensors {_abbreviate(missing)}")
  optional = {"lm_head.weight"} if config.tie_embeddings else set()
  unexpected = sorted(n for n in tensors.names - expected - optional if not n.endswith(_IGNORED_SUFFIXES))
  if unexpected:
    raise ValueError(f"checkpoint {directory} has tensors this architecture does not use: "
                     f"{_abbreviate(unexpected)}")
  for layout in layouts:
    shape = tensors.shape(layout.hf_name)
    if shape != layout.hf_shape:
      raise ValueError(f"tensor {layout.hf_name} in {directory} has shape {shape}, "
                       f"expected {layout.hf_shape} for this config")

  rngs = rngs if rngs is not None else nnx.Rngs(0)
  abstract = nnx.eval_shape(lambda r: Transformer(config, rngs=r), rngs)
  graphdef, abstract_params = nnx.split(abstract)
  by_path = {layout.path: layout for layout in layouts}

  def load(path: tuple, variable: nnx.Variable) -> nnx.Variable:
    layout = by_path[path]
    value = layout.to_ours(tensors.get(layout.hf_name))
    return variable.replace(jnp.asarray(value, dtype=config.params_dtype))

  params = nnx.map_state(load, abstract_params)
  return nnx.merge(graphdef, params), config


def save_hf_checkpoint(model: Transformer, config: ModelConfig, path: str | os.PathLike, *,
                       max_shard_bytes: int | None = None) -> None:
  """Writes config.json and the weights as safetensors in the Hugging Face Qwen3 layout.

  With `max_shard_bytes`, tensors are split greedily into model-0000i-of-0000n.safetensors files of at
  most that size (a single larger tensor gets its own file) plus model.safetensors.index.json.
  """
  if max_shard_bytes is not None and max_shard_bytes <= 0:
    raise ValueError(f"max_shard_bytes={max_shard_bytes} must be positive")
  directory = pathlib.Path(path)
  directory.mkdir(parents=True, exist_ok=True)
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  storage_dtype = np.dtype(config.params_dtype)
  tensors = {}
  for layout in _tensor_layouts(config):
    value = np.asarray(jax.device_get(flat[layout.path][...])).astype(storage_dtype)
    tensors[layout.hf_name] = np.ascontiguousarray(layout.to_hf(value))

  shards = _split_into_shards(tensors, max_shard_bytes)
  metadata = {"format": "pt"}
  if len(shards) == 1:
    save_file(shards[0], str(directory / SINGLE_FILE), metadata=metadata)
  else:
    weight_map = {}
    for index, shard in enumerate(shards, start=1):
      filename = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
      save_file(shard, str(directory / filename), metadata=metadata)
      weight_map.update({name: filename for name in shard})
    total_size = sum(t.nbytes for t in tensors.values())
    index_json = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX_FILE).write_text(json.dumps(index_json, indent=2))
  (directory / CONFIG_FILE).write_text(json.dumps(config.to_hf_config(), indent=2))


def _split_into_shards(tensors: Mapping[str, np.ndarray], max_shard_bytes: int | None
                       ) -> list[dict[str, np.ndarray]]:
  if max_shard_bytes is None:
    return [dict(tensors)]
  shards, current, current_bytes = [], {}, 0
  for name, tensor in tensors.items():
    if current and current_bytes + tensor.nbytes > max_shard_bytes:
      shards.append(current)
      current, current_bytes = {}, 0
    current[name] = tensor
    current_bytes += tensor.nbytes
  shards.append(current)
  return shards


class _CheckpointReader:
  """Name -> file lookup over the safetensors files of a checkpoint directory, read lazily."""

  def __init__(self, directory: pathlib.Path):
    index_path = directory / INDEX_FILE
    if index_path.exists():
      weight_map = _read_json(index_path).get("weight_map")
      if not isinstance(weight_map, dict):
        raise ValueError(f"{index_path} has no 'weight_map' object")
      files = sorted(set(weight_map.values()))
      for filename in files:
        if not (directory / filename).exists():
          raise FileNotFoundError(f"{index_path} lists {filename}, which is missing from {directory}")
    elif (directory / SINGLE_FILE).exists():
      files = [SINGLE_FILE]
    else:
      files = sorted(p.name for p in directory.glob("*.safetensors"))
      if not files:
        raise FileNotFoundError(f"no {SINGLE_FILE}, {INDEX_FILE} or *.safetensors files in {directory}")
    self._file_of: dict[str, pathlib.Path] = {}
    self._shapes: dict[str, tuple[int, ...]] = {}
    for filename in files:
      file_path = directory / filename
      with _open(file_path) as f:
        for name in f.keys():
          self._file_of[name] = file_path
          self._shapes[name] = tuple(f.get_slice(name).get_shape())

  @property
  def names(self) -> set[str]:
    return set(self._file_of)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._shapes[name]

  def get(self, name: str) -> np.ndarray:
    with _open(self._file_of[name]) as f:
      return f.get_tensor(name)


def _open(file_path: pathlib.Path):
  try:
    return safe_open(str(file_path), framework="numpy")
  except (SafetensorError, OSError) as e:
    raise ValueError(f"cannot read safetensors file {file_path}: {e}") from e


def _read_json(file_path: pathlib.Path) -> dict:
  if not file_path.exists():
    raise FileNotFoundError(f"missing {file_path.name} in {file_path.parent}")
  try:
    return json.loads(file_path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{file_path} is not valid JSON: {e}") from e


def _abbreviate(names: list[str], limit: int = 8) -> str:
  shown = ", ".join(names[:limit])
  return f"[{shown}{f', ... ({len(names) - limit} more)' if len(names) > limit else ''}]"
