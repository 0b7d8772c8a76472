"""Config of `python -m rao_jax.generate`; presets are the model presets.

  python -m rao_jax.generate --config configs/generate.py:tiny --prompt "Craft 2 plank"
  python -m rao_jax.generate --config configs/generate.py:qwen3_0_6b \
      --config.checkpoint=/path/to/Qwen3-0.6B --config.temperature=0 --prompt "Hello"
"""
from __future__ import annotations

import ml_collections

from rao_jax import config_utils
from rao_jax.model import config as model_config


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """The generation config of model preset `preset` (default "tiny")."""
  name = config_utils.parse_preset(preset, model_config.PRESETS, default="tiny")
  cfg = ml_collections.ConfigDict()
  cfg.preset = name
  # Fields of rao_jax.model.config.ModelConfig; ignored when `checkpoint` is set (its config.json wins).
  cfg.model = model_config.get_preset(name).to_dict()
  # A .model file, tokenizer.json or a directory holding one. Empty: the checkpoint's tokenizer, or for
  # random-init models a toy SentencePiece model trained once on the built-in corpus, cached in workdir.
  cfg.tokenizer = ""
  cfg.checkpoint = ""  # Hugging Face Qwen3 directory (config.json + safetensors); empty: random init
  cfg.seed = 0
  cfg.max_new_tokens = 32
  cfg.temperature = 1.0  # 0 samples greedily
  cfg.chat = False  # wrap each prompt as the user turn of the tokenizer's chat layout
  cfg.workdir = "workdir/generate"
  return cfg
