"""The train step on 8 simulated CPU devices (data=2, fsdp=2, tensor=2) equals the single-device step.

JAX in the pytest process already has its one CPU device, so the comparison runs in a fresh process with
`--xla_force_host_platform_device_count=8`.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from rao_jax import sharding
    from rao_jax.model.config import ModelConfig
    from rao_jax.model.transformer import Transformer
    from rao_jax.train import optimizer, packing, train_step as ts

    config = ModelConfig(vocab_size=64, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                         head_dim=8, intermediate_size=48, rope_theta=10_000.0)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    params = nnx.map_state(lambda path, v: v.replace(jnp.asarray(
        (path[-1] == "scale") + 0.1 * rng.standard_normal(v.get_value().shape), jnp.float32)), abstract)
    sequences = []
    for length in (9, 5, 12, 7, 3, 10, 14, 6, 11, 4):
      tokens = rng.integers(0, 64, length).astype(np.int32)
      mask = rng.random(length) < 0.6
      sequences.append((tokens, mask, np.where(mask, -2.0, 0.0).astype(np.float32)))
    batch, _ = packing.pack_sequences(sequences, 8, 16)
    node_advantages = np.pad(np.linspace(-1, 1, 10), (0, 6)).astype(np.float32)  # [16]: padded like P
    node_valid = np.arange(16) < 10
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(learning_rate=1e-2, weight_decay=0.1))
    step_config = ts.TrainStepConfig(loss="cispo", num_micro_batches=2)

    def run(mesh):
      model = nnx.merge(graphdef, jax.tree.map(jnp.copy, params))
      g, state = ts.create_train_state(model, tx, mesh)
      step = ts.make_train_step(g, state, tx, step_config, mesh)
      for _ in range(2):
        state, metrics = step(state, batch, node_advantages, node_valid)
      gate = state.params["layers"][0]["mlp"]["gate"].get_value()
      return jax.device_get(state.params), jax.device_get(metrics), str(gate.sharding.spec)

    single, single_metrics, _ = run(sharding.make_mesh(devices=jax.devices()[:1]))
    sharded, sharded_metrics, gate_spec = run(sharding.make_mesh(data=2, fsdp=2, tensor=2))
    param_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(single),
                                                                  jax.tree.leaves(sharded)))
    metric_diff = {k: abs(float(single_metrics[k]) - float(sharded_metrics[k])) for k in single_metrics}
    print("RESULT " + json.dumps(dict(devices=len(jax.devices()), param_diff=param_diff,
                                      metric_diff=metric_diff, gate_spec=gate_spec,
                                      loss=float(sharded_metrics["loss"]))))
""")


@pytest.mark.multidevice
def test_sharded_step_matches_single_device_step():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
  done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
  result = json.loads(line[len("RESULT "):])
  assert result["devices"] == 8
  assert "fsdp" in result["gate_spec"] and "tensor" in result["gate_spec"]  # params really are sharded
  assert result["param_diff"] < 1e-5, result
  assert all(diff < 1e-4 for diff in result["metric_diff"].values()), result
