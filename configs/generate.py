"""Config of `python experiments/generate.py`; presets are the model presets.

  python experiments/generate.py --config configs/generate.py:tiny \
      --config.workdir=workdir/textcraft_tiny --prompt "Craft 2x m0_i1"      # a trained policy
  python experiments/generate.py --config configs/generate.py:qwen3_0_6b \
      --config.checkpoint=/path/to/Qwen3-0.6B --config.temperature=0 --prompt "Hello"
  python experiments/generate.py --config configs/generate.py:tiny --prompt "Craft 2 plank"  # random init
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
  # The model: a training work directory's policy (experiments/train_textcraft.py's `workdir`: its latest
  # checkpoint, else its warm start), a Hugging Face Qwen3 directory (config.json + safetensors), or, with
  # both empty, a random initialisation of `model`.
  cfg.workdir = ""
  cfg.checkpoint = ""
  # Fields of rao_jax.model.config.ModelConfig; used for random init only (a work directory or a
  # checkpoint brings its own).
  cfg.model = model_config.get_preset(name).to_dict()
  # A .model file, tokenizer.json or a directory holding one. Empty: the work directory's or checkpoint's
  # tokenizer, or for random-init models a toy SentencePiece model trained once on the built-in corpus
  # and cached in `cache_dir`.
  cfg.tokenizer = ""
  cfg.cache_dir = "workdir/generate"
  cfg.seed = 0
  cfg.max_new_tokens = 32
  cfg.temperature = 1.0  # 0 samples greedily
  cfg.chat = False  # wrap each prompt as the user turn of the tokenizer's chat layout
  return cfg
