"""Trains a recursive agent with RAO on any environment suite (rerun the same command to resume).

  python experiments/train.py --config configs/textcraft.py:tiny
  python experiments/train.py --config configs/diagnostic.py:choice
  python experiments/train.py --config configs/textcraft.py:qwen3_4b \
      --config.warm_start.checkpoint=/path/to/Qwen3-4B-Instruct-2507 --config.workdir=/data/run1

Several hosts (a TPU pod slice): run the same command on every host with `--multihost` (JAX finds the
slice by itself) and a work directory all hosts share; see docs/tpu.md. Several processes on one
machine (tests): add `--coordinator_address=localhost:PORT --num_processes=N --process_id=I`.
"""
import os
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from rao_jax import distributed, host_memory
from rao_jax.train import report, trainer
from rao_jax.train.metrics_log import read_records
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/<suite>.py:preset)",
                                          lock_config=True)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "start jax.distributed: one process per host")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (not on TPU)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the run (not on TPU)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (not on TPU)")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  if _MULTIHOST.value:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  settings = settings_from_config(_CONFIG.value)
  with trainer.Trainer(trainer.build_run(settings)) as run:
    records = run.train()
  if not distributed.is_primary():
    return
  if not records:
    print(f"resumed the completed run in {settings.workdir} (step {settings.rl.num_steps}): nothing left to do")
  print(report.report(settings.workdir, settings.eval.split))
  depths = report.depth_summary(read_records(os.path.join(settings.workdir, "metrics.jsonl")))
  if depths:
    print(depths)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
