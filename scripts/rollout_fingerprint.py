"""A fingerprint of a trained run's rollouts: are samples token-identical after a change to the engine?

    python scripts/rollout_fingerprint.py --config configs/textcraft.py:tiny \
        --config.workdir=workdir/textcraft_tiny [--tasks 8 --repeats 3]

Restores the work directory's latest checkpoint (built by `experiments/train.py`), rolls out the first
`--tasks` training tasks × G (the config's samples per task) at the config's temperature and the same
tasks greedily, with a fixed key, and prints for each: the node and token counts, the root success, the
first 16 hex digits of the sha256 of every node array, token, loss mask and sampler log-prob, and the
decode and total seconds (`--repeats` times, so the later, warm runs time the engine without compiles).
Equal hashes before and after a change mean token-identical rollouts; docs/results.md records them for
the tiny preset's main job.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from rao_jax import host_memory
from rao_jax.rollout.trees import Trees
from rao_jax.train import trainer
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/<suite>.py:preset)")
_TASKS = flags.DEFINE_integer("tasks", 8, "training tasks rolled out")
_REPEATS = flags.DEFINE_integer("repeats", 1, "times each rollout is repeated (same key)")


def fingerprint(trees: Trees, with_log_probs: bool = True) -> str:
  """sha256 (16 hex digits) of the trees' node arrays, tokens and loss masks, and with `with_log_probs`
  the sampler's log-probs (which move with float rounding while the tokens stay the same)."""
  digest = hashlib.sha256()
  for array in (trees.tree, trees.group, trees.parent, trees.depth, trees.success, trees.end_reason,
                trees.token_offsets, trees.tokens, trees.loss_mask,
                *((trees.sampler_log_probs,) if with_log_probs else ())):
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]


def main(argv: Sequence[str]) -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  del argv
  logging.set_verbosity(logging.WARNING)
  settings = settings_from_config(_CONFIG.value)
  with trainer.Trainer(trainer.build_run(settings, warm_start_policy=False)) as loop:
    if not loop.restore():
      raise SystemExit(f"no checkpoint in {settings.workdir}/checkpoints: train the run first")
    suite = loop.run_parts.suite
    tasks = [t.to_dict() for t in trainer.stream_tasks(loop.run_parts.train_tasks, 0, _TASKS.value, settings.seed)]
    print(f"checkpoint step {loop.step}; {len(tasks)} tasks\n")
    print("| rollout | nodes | tokens | root success | sha256 | sha256 without log-probs | max |Δ log-prob| "
          "vs first repeat | decode s | total s |\n|---|---|---|---|---|---|---|---|---|")
    first = {}
    for _ in range(_REPEATS.value):
      for name, samples, sampling in (("sampled", settings.rl.samples_per_task, None),
                                      ("greedy", 1, settings.greedy_rollout.sampling)):
        result = loop.engine.run(suite.env_name, suite.env_config, tasks, samples, jax.random.key(123),
                                 sampling=sampling)
        trees = result.trees
        reference = first.setdefault(name, trees.sampler_log_probs)
        drift = (f"{np.abs(trees.sampler_log_probs - reference).max():.1e}"
                 if reference.shape == trees.sampler_log_probs.shape else "n/a")
        print(f"| {name} | {trees.num_nodes} | {trees.tokens.shape[0]} | "
              f"{trees.success[trees.parent < 0].mean():.4f} | {fingerprint(trees)} | "
              f"{fingerprint(trees, with_log_probs=False)} | {drift} | "
              f"{result.timings.decode_s:.2f} | {result.timings.total_s:.2f} |", flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
