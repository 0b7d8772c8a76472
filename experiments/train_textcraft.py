"""Trains a recursive agent with RAO on TextCraft-Synth (rerun the same command to resume).

  python experiments/train_textcraft.py --config configs/textcraft.py:tiny
  python experiments/train_textcraft.py --config configs/textcraft.py:qwen3_4b \
      --config.model.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=/data/run1
"""
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from rao_jax.train import trainer
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/textcraft.py:preset)",
                                          lock_config=True)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  settings = settings_from_config(_CONFIG.value)
  with trainer.Trainer(trainer.build_run(settings)) as run:
    records = run.train()
  for record in records:
    if record["kind"] == "eval":
      tiers = {k.split("/", 1)[1]: round(v, 3) for k, v in record.items() if k.startswith("success/")}
      print(f"eval step {record['step']}: success {record['success']:.3f} {tiers}")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
