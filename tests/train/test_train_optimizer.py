"""AdamW configuration: the paper's defaults, schedules, clipping and which parameters decay."""
import jax.numpy as jnp
import numpy as np
import pytest

from rao_jax.train.optimizer import OptimizerConfig, make_optimizer, make_schedule


def test_defaults_are_the_papers():
  config = OptimizerConfig()
  assert (config.learning_rate, config.b1, config.b2, config.eps) == (3e-6, 0.9, 0.95, 1e-8)
  assert (config.weight_decay, config.max_grad_norm, config.schedule) == (0.017, 1.0, "constant")


def test_schedules():
  constant = make_schedule(OptimizerConfig(learning_rate=1.0, warmup_steps=4))
  np.testing.assert_allclose([constant(0), constant(2), constant(4), constant(100)], [0.0, 0.5, 1.0, 1.0])
  cosine = make_schedule(OptimizerConfig(learning_rate=1.0, schedule="warmup_cosine", warmup_steps=2,
                                         total_steps=12, final_lr_fraction=0.1))
  np.testing.assert_allclose([cosine(1), cosine(2), cosine(7), cosine(12)], [0.5, 1.0, 0.55, 0.1], atol=1e-6)
  linear = make_schedule(OptimizerConfig(learning_rate=1.0, schedule="linear", total_steps=10))
  np.testing.assert_allclose([linear(0), linear(5), linear(10)], [1.0, 0.5, 0.0], atol=1e-6)


def test_weight_decay_skips_norm_scales_and_clipping_bounds_the_gradient():
  params = {"kernel": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
  zero_grads = {"kernel": jnp.zeros((2, 2)), "scale": jnp.zeros((2,))}
  tx = make_optimizer(OptimizerConfig(learning_rate=0.1, weight_decay=0.5))
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.05)  # -lr * wd * p
  np.testing.assert_allclose(updates["scale"], 0.0)
  tx = make_optimizer(OptimizerConfig(learning_rate=0.1, weight_decay=0.5, decay_norm_scales=True))
  np.testing.assert_allclose(tx.update(zero_grads, tx.init(params), params)[0]["scale"], -0.05)
  # With a huge eps Adam's first update is -lr * g / (|g| + eps), so the clipped gradient shows through.
  big = {"kernel": jnp.full((2, 2), 10.0), "scale": jnp.zeros((2,))}  # global norm 20
  for max_norm, g in ((1.0, 0.5), (0.0, 10.0)):
    tx = make_optimizer(OptimizerConfig(learning_rate=1.0, eps=1e3, weight_decay=0.0, max_grad_norm=max_norm))
    updates, _ = tx.update(big, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -g / (g + 1e3), rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"schedule": "step"}, "schedule"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"b2": 1.0}, "b2=1.0 must be in"),
    ({"schedule": "warmup_cosine", "warmup_steps": 5, "total_steps": 5}, "total_steps"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
])
def test_bad_configs_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    OptimizerConfig(**kwargs)
