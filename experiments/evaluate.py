"""Evaluates a training checkpoint greedily on any split and difficulty tiers of its suite; writes the trees.

  python experiments/evaluate.py --config configs/textcraft.py:tiny --split val \
      --difficulties easy,medium,hard,extreme --tasks_per_difficulty 20 [--step 16]

Without --step the latest checkpoint of the config's workdir is used (the warm-start policy if there is
none). The trees go to {workdir}/trees/evaluate_{split}_step{N}.jsonl (or --output) for the viewer.
"""
import json
import os
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from rao_jax.train import trainer
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/<suite>.py:preset)",
                                          lock_config=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_SPLIT = flags.DEFINE_string("split", "val", "task split (one of the suite's)")
_DIFFICULTIES = flags.DEFINE_list("difficulties", None, "tiers (default: the config's eval tiers)")
_TASKS = flags.DEFINE_integer("tasks_per_difficulty", None, "tasks per tier (default: the config's)")
_OUTPUT = flags.DEFINE_string("output", None, "trees JSON-lines path")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  settings = settings_from_config(_CONFIG.value)
  checkpoint_dir = os.path.join(settings.workdir, "checkpoints")
  has_checkpoint = _STEP.value is not None or (
      os.path.isdir(checkpoint_dir) and any(name.isdigit() for name in os.listdir(checkpoint_dir)))
  with trainer.Trainer(trainer.build_run(settings, warm_start_policy=not has_checkpoint)) as run:
    if not run.restore(_STEP.value):
      print(f"no checkpoint in {settings.workdir}/checkpoints: evaluating the warm-start policy")
    evaluation = run.evaluate(_SPLIT.value, _DIFFICULTIES.value, _TASKS.value)
  output = _OUTPUT.value or run.trees_path(f"evaluate_{_SPLIT.value}_step{run.step:06d}")
  evaluation.write_trees(output)
  print(json.dumps({"step": run.step, "split": _SPLIT.value, **evaluation.metrics}, indent=1))
  print(f"trees: {output}")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
