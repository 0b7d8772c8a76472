"""Metrics to a JSON-lines file and TensorBoard event files, consistent across restarts.

Every record is `{"step": s, "kind": k, **scalars}` on one line of `metrics.jsonl`, and each scalar
`name` goes to TensorBoard as `{kind}/{name}` at step s. A run resumed from the checkpoint at step N
first drops every record with step ≥ N (work done after that checkpoint is redone), so the file of an
interrupted-and-resumed run equals the uninterrupted run's; TensorBoard is told the same with
`purge_step`.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np
import tensorboardX


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
  """

  def __init__(self, workdir: str, *, start_step: int = 0, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [r for r in read_records(self.path) if r["step"] < start_step]
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, self.path)
    self._file = open(self.path, "a", encoding="utf-8")
    self._writer = (tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step)
                    if tensorboard else None)

  def write(self, step: int, kind: str, scalars: Mapping[str, float]) -> dict:
    """Logs `scalars` (numbers or 0-d arrays) as one record; returns the record."""
    record = {"step": int(step), "kind": kind, **{k: _scalar(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._writer is not None:
      for name, value in scalars.items():
        self._writer.add_scalar(f"{kind}/{name}", float(np.asarray(value)), int(step))
      self._writer.flush()
    return record

  def close(self) -> None:
    self._file.close()
    if self._writer is not None:
      self._writer.close()

  def __enter__(self) -> MetricsLog:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
