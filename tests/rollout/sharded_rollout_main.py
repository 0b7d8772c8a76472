"""Run by test_rollout_sharding.py in a fresh process with 8 simulated CPU devices.

Grows the same greedy trees without a mesh and on a (data=4, tensor=2) mesh and writes both trees'
token sequences as JSON, so the parent test can compare them.
"""
import json
import sys

import jax
from flax import nnx

from rao_jax import sharding
from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent.chat import layout_for
from rao_jax.agent.interpreter.pool import InterpreterConfig, InterpreterPool
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.engine import RolloutEngine
from rao_jax.rollout.sampling import SamplingConfig

LAUNCH = ("a, b = await asyncio.gather(launch_subagent({'m1_i1': 1}), launch_subagent({'m2_i1': 1}))\n"
          "print(a, b)")


def main(tokenizer_path: str, tasks_path: str, out_path: str) -> None:
  assert len(jax.devices()) == 8, jax.devices()
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
  with open(tasks_path) as f:
    tasks = json.load(f)
  config = ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=4,
                       num_kv_heads=2, head_dim=16, intermediate_size=64)
  model = Transformer(config, rngs=nnx.Rngs(0))
  launch = tokenizer.encode(f"<thought>split</thought>\n<python>\n{LAUNCH}\n</python>")
  forcer = lambda group, path, turn: launch if path == () and turn == 0 else None
  rollout = RolloutConfig(num_slots=8, context_window=2048, completion_limit=96, max_steps_per_node=2,
                          max_depth=2, prefill_chunk_buckets=(64, 256), prefill_row_buckets=(8,),
                          sampling=SamplingConfig(temperature=0.0))
  results = {}
  with InterpreterPool(InterpreterConfig()) as pool:
    for name, mesh in (("single", None), ("sharded", sharding.make_mesh(data=4, tensor=2))):
      engine = RolloutEngine(model, layout_for(tokenizer), pool, rollout, mesh=mesh)
      trees = engine.run("textcraft_synth", {"world": "small"}, tasks, 2, jax.random.key(0),
                         forcer=forcer).trees
      results[name] = {
          "parent": trees.parent.tolist(),
          "sequences": [trees.node_sequence(i)[0].tolist() for i in range(trees.num_nodes)],
          "param_devices": len(jax.tree.leaves(engine.params)[0].sharding.device_set),
      }
  with open(out_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
