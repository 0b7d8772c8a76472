"""A trained policy read back from a training work directory (the one `experiments/train_textcraft.py` writes).

What a work directory holds, and what is read from it:

    checkpoints/<step>/               the train state (only its params are read) and a progress record
                                      with the run's identity: model config and tokenizer fingerprint;
    warm_start/<key>/params           the SFT warm start's parameters, and identity.json next to them
                                      (the same identity; `warm_start.IDENTITY_FILE`);
    tokenizer/<key>/tokenizer.model   the SentencePiece tokenizer(s) trained for the run.

`load_saved_policy` takes the latest checkpoint's policy, or the latest warm start's when there is no
checkpoint yet, with the tokenizer whose sha256 (`checkpoint.tokenizer_fingerprint`) the policy records.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.train import checkpoint, warm_start


@dataclasses.dataclass(frozen=True)
class SavedPolicy:
  """A policy, the tokenizer it was trained with, and where it was read from (for messages)."""

  model: Transformer
  tokenizer: tokenizer_lib.Tokenizer
  source: str


def load_saved_policy(workdir: str, tokenizer_path: str = "") -> SavedPolicy:
  """The latest policy of the training work directory `workdir`, on the first device.

  `tokenizer_path` (a tokenizer file or directory) replaces the search under `workdir/tokenizer`, which
  finds nothing for a run on an imported checkpoint (its tokenizer stays in the checkpoint's directory);
  it must be the tokenizer the policy was trained with. Raises ValueError when `workdir` holds no policy
  or no matching tokenizer, CheckpointError when the policy's files are damaged.
  """
  if not os.path.isdir(workdir):
    raise ValueError(f"the work directory {workdir!r} does not exist")
  saved = checkpoint.read_latest_params(os.path.join(workdir, "checkpoints"),
                                        lambda model_config: _abstract_model(model_config)[1])
  if saved is not None:
    step, identity, params = saved
    source = f"checkpoint {step} of {workdir}"
  else:
    path, identity = _latest_warm_start(workdir)
    try:
      params = ocp.StandardCheckpointer().restore(os.path.join(path, "params"),
                                                  _abstract_model(identity.model_config)[1])
    except Exception as e:  # Orbax raises many types for missing or damaged files.
      raise checkpoint.CheckpointError(f"the warm start {path} is corrupt or does not match its recorded "
                                       f"model config: {e}") from e
    source = f"warm start {path} (no checkpoint yet)"
  graphdef, _ = _abstract_model(identity.model_config)
  tokenizer = _matching_tokenizer(workdir, identity.tokenizer_fingerprint, tokenizer_path)
  return SavedPolicy(model=nnx.merge(graphdef, params), tokenizer=tokenizer, source=source)


def _abstract_model(model_config: Mapping[str, Any]) -> tuple[nnx.GraphDef, nnx.State]:
  """The graph and the parameter shapes (jax.ShapeDtypeStruct on the first device) of a saved model config."""
  config = ModelConfig.from_dict(dict(model_config))
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return graphdef, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)


def _latest_warm_start(workdir: str) -> tuple[str, checkpoint.RunIdentity]:
  """The most recently written `warm_start/<key>` directory with parameters, and its recorded identity."""
  paths = [os.path.dirname(p) for p in glob.glob(os.path.join(workdir, "warm_start", "*", "params"))]
  if not paths:
    raise ValueError(f"{workdir} holds no trained policy: no checkpoint (checkpoints/<step>/) and no warm "
                     "start (warm_start/<key>/params); train one with experiments/train_textcraft.py")
  path = max(paths, key=os.path.getmtime)
  identity_file = os.path.join(path, warm_start.IDENTITY_FILE)
  if not os.path.isfile(identity_file):
    raise ValueError(f"the warm start {path} does not record its model config and tokenizer "
                     f"({warm_start.IDENTITY_FILE}; older warm starts lack it): sample a checkpoint of the run "
                     "instead (experiments/train_textcraft.py writes one every config.checkpoint_every steps)")
  with open(identity_file, encoding="utf-8") as f:
    record = json.load(f)
  return path, checkpoint.RunIdentity(model_config=record["model_config"],
                                      tokenizer_fingerprint=record["tokenizer_fingerprint"])


def _matching_tokenizer(workdir: str, fingerprint: str, tokenizer_path: str) -> tokenizer_lib.Tokenizer:
  """`tokenizer_path`'s tokenizer, or the one under `workdir/tokenizer` with the policy's fingerprint."""
  if tokenizer_path:
    candidates = [tokenizer_lib.load_tokenizer(tokenizer_path)]
  else:
    candidates = [tokenizer_lib.SentencePieceTokenizer(f)
                  for f in sorted(glob.glob(os.path.join(workdir, "tokenizer", "*", "tokenizer.model")))]
  for tokenizer in candidates:
    if checkpoint.tokenizer_fingerprint(tokenizer) == fingerprint:
      return tokenizer
  if tokenizer_path:
    raise ValueError(f"the tokenizer {tokenizer_path!r} is not the one the policy was trained with "
                     f"(sha256 {fingerprint[:12]}…)")
  raise ValueError(f"no tokenizer under {workdir}/tokenizer is the one the policy was trained with (sha256 "
                   f"{fingerprint[:12]}…); give it explicitly (a run on an imported checkpoint keeps it in "
                   "the checkpoint's directory)")
