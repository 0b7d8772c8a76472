"""Random weights without the initialisers: fast model construction for tests and benchmarks."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer


def random_normal_model(config: ModelConfig, seed: int = 0, scale: float = 0.1) -> Transformer:
  """A `Transformer` with weights N(0, scale²) and RMSNorm scales 1 + N(0, scale²), drawn with numpy.

  Building with `Transformer(config, rngs=...)` on CPU compiles one threefry initialiser program per
  parameter shape (seconds for a toy model); this builds the graph abstractly and fills it instead.
  """
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
  generator = np.random.default_rng(seed)

  def fill(path, variable):
    value = variable.get_value()
    offset = 1.0 if path[-1] == "scale" else 0.0
    draw = offset + scale * generator.standard_normal(value.shape)
    return variable.replace(jnp.asarray(draw, value.dtype))

  return nnx.merge(graphdef, nnx.map_state(fill, abstract))
