"""Metrics to a JSON-lines file and TensorBoard event files, consistent across restarts.

Every record is `{"step": s, "kind": k, **scalars}` on one line of `metrics.jsonl`, and each scalar
`name` goes to TensorBoard as `{kind}/{name}` at step s (`train/updated`, not `train/train/updated`, for
a name that already starts with its kind). A run resumed from the checkpoint at step N first drops every
RL record with step ≥ N (work done after that checkpoint is redone), so the file of an
interrupted-and-resumed run equals the uninterrupted run's; TensorBoard is told the same with
`purge_step`. Records of the run's set-up (`SETUP_KINDS`: the warm start's loss curve, whose steps
count SFT steps, and the phase times) are written once, by a fresh run, and kept on resume; their
TensorBoard events go to `tensorboard/setup/`, which no purge touches.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np
import tensorboardX


SETUP_KINDS = ("setup", "sft")


def _scalar(value) -> float | int | None:
  value = np.asarray(value).item()
  if isinstance(value, float) and not math.isfinite(value):
    return None  # JSON has no NaN/inf; the TensorBoard copy keeps them
  return value


def read_records(path: str) -> list[dict]:
  """The records of a metrics.jsonl file (a torn last line, from a kill mid-write, is ignored)."""
  if not os.path.isfile(path):
    return []
  records = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records


class MetricsLog:
  """Appends step records to `{workdir}/metrics.jsonl` and `{workdir}/tensorboard/`.

  Args:
    workdir: the run's directory.
    start_step: records with step ≥ this are removed first (the step the run resumes from; 0 = fresh).
    tensorboard: also write TensorBoard event files.
    files: False builds the records without writing anything (every process but the first of a
      multi-host run, which all compute the same records).
  """

  def __init__(self, workdir: str, *, start_step: int = 0, tensorboard: bool = True, files: bool = True):
    self._file = self._writer = self._setup_writer = None
    self._tensorboard_dir = None
    if not files:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [r for r in read_records(self.path)
            if r["step"] < start_step or (start_step and r["kind"] in SETUP_KINDS)]
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, self.path)
    self._file = open(self.path, "a", encoding="utf-8")
    self._tensorboard_dir = os.path.join(workdir, "tensorboard") if tensorboard else None
    self._writer = (tensorboardX.SummaryWriter(self._tensorboard_dir, purge_step=start_step)
                    if tensorboard else None)
    self._setup_writer = None

  def write(self, step: int, kind: str, scalars: Mapping[str, float]) -> dict:
    """Logs `scalars` (numbers or 0-d arrays) as one record; returns the record."""
    record = {"step": int(step), "kind": kind, **{k: _scalar(v) for k, v in scalars.items()}}
    if self._file is None:
      return record
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    os.fsync(self._file.fileno())  # on a mounted bucket (gcsfuse) a file is uploaded on fsync or close
    writer = self._writer_for(kind)
    if writer is not None:
      for name, value in scalars.items():
        writer.add_scalar(f"{kind}/{name.removeprefix(kind + '/')}", float(np.asarray(value)), int(step))
      writer.flush()
    return record

  def _writer_for(self, kind: str) -> tensorboardX.SummaryWriter | None:
    if kind not in SETUP_KINDS or self._tensorboard_dir is None:
      return self._writer
    if self._setup_writer is None:
      self._setup_writer = tensorboardX.SummaryWriter(os.path.join(self._tensorboard_dir, "setup"))
    return self._setup_writer

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    for writer in (self._writer, self._setup_writer):
      if writer is not None:
        writer.close()

  def __enter__(self) -> MetricsLog:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
