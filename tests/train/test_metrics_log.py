"""metrics.jsonl and TensorBoard records: tags not doubled, set-up records kept across a resume, and what
a resumed run's progress bar shows before it evaluates again."""
import math
import pathlib
import struct

from tensorboardX.proto import event_pb2

from rao_jax.train.metrics_log import MetricsLog, read_records
from rao_jax.train.trainer import last_eval_success


def _tags(directory) -> set[str]:
  """Scalar tags of the event files directly in `directory` (TFRecord frames of `Event` protos)."""
  tags = set()
  for path in pathlib.Path(directory).glob("events.out.tfevents.*"):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack_from("<Q", data, offset)
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      tags.update(value.tag for value in event.summary.value)
      offset += 12 + length + 4
  return tags


def test_tensorboard_tags_name_the_kind_once(tmp_path):
  with MetricsLog(str(tmp_path)) as log:
    log.write(0, "train", {"train/updated": 1.0, "rollout/success": 0.5})
    log.write(0, "eval", {"success": 0.25, "solved/easy": 3})
  assert _tags(tmp_path / "tensorboard") == {"train/updated", "train/rollout/success", "eval/success",
                                             "eval/solved/easy"}


def test_setup_records_survive_a_resume_and_rl_records_after_it_do_not(tmp_path):
  with MetricsLog(str(tmp_path)) as log:
    log.write(0, "setup", {"time/warm_start_s": 12.0})
    for step in range(5):
      log.write(step, "sft", {"loss": 5.0 - step})
    for step in range(4):
      log.write(step, "train", {"loss": float(step)})
  with MetricsLog(str(tmp_path), start_step=2) as log:  # resumed from the checkpoint at step 2
    log.write(2, "train", {"loss": 20.0})
  records = read_records(str(tmp_path / "metrics.jsonl"))
  assert [r["step"] for r in records if r["kind"] == "sft"] == [0, 1, 2, 3, 4]
  assert [(r["step"], r["loss"]) for r in records if r["kind"] == "train"] == [(0, 0.0), (1, 1.0), (2, 20.0)]
  assert [r["kind"] for r in records].count("setup") == 1
  assert _tags(tmp_path / "tensorboard" / "setup") == {"setup/time/warm_start_s", "sft/loss"}
  with MetricsLog(str(tmp_path), start_step=0):  # a fresh run starts a fresh file
    pass
  assert read_records(str(tmp_path / "metrics.jsonl")) == []


def test_a_resumed_run_shows_the_last_evaluation_before_its_step():
  records = [{"step": 0, "kind": "eval", "success": 0.1}, {"step": 0, "kind": "train"},
             {"step": 10, "kind": "eval", "success": 0.6}, {"step": 10, "kind": "train"},
             {"step": 20, "kind": "eval", "success": 0.9}]
  assert last_eval_success(records, 15) == 0.6
  assert last_eval_success(records, 20) == 0.6  # the step-20 evaluation is redone after the resume
  assert math.isnan(last_eval_success(records, 0))
