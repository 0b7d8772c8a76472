"""Ahead-of-time compilation of the trainer's programs (`rao_jax.aot`, `scripts/compile_tpu.py`).

The `tiny` preset's train step, prefill and decode compile on 8 simulated CPU devices (a fresh process:
this one already has its single CPU device) and XLA's per-device byte counts must agree with the
layouts the trainer uses: the train step's arguments are exactly the train state's shards plus the
batch's, and the donated state comes back aliased. With `libtpu` installed the same programs compile
for a TPU v5p-8 topology (skipped otherwise: CI installs `.[test]`, not `.[tpu-aot]`).
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from rao_jax import aot
from rao_jax.train.settings import Settings, settings_from_config

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = "configs/textcraft.py:tiny"
ROW_BYTES_PER_TOKEN = 4 + 4 + 4 + 1 + 4 + 4  # PackedBatch: tokens, positions, segment_ids, loss_mask, old lp, node


def _tiny_settings() -> Settings:
  spec = importlib.util.spec_from_file_location("textcraft_config", REPO / "configs" / "textcraft.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return settings_from_config(module.get_config("tiny"))


def _check_program(record: dict) -> None:
  for name in ("argument_bytes", "output_bytes", "temp_bytes", "resident_bytes"):
    assert record[name] > 0, (name, record)
  assert 0 <= record["alias_bytes"] <= record["output_bytes"], record
  assert record["total_bytes"] >= record["argument_bytes"], record
  assert record["total_bytes"] >= record["temp_bytes"], record
  assert record["peak_bytes"] == record["total_bytes"] + record["resident_bytes"], record
  assert record["compile_s"] > 0


@pytest.mark.multidevice
def test_tiny_programs_compile_on_simulated_cpu_meshes(tmp_path):
  out = tmp_path / "memory.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  done = subprocess.run(
      [sys.executable, str(REPO / "scripts" / "compile_tpu.py"), "--config", TINY, "--cpu_devices", "8",
       "--mesh", "8,1,1", "--mesh", "2,2,2", "--mesh", "3,1,1", "--micro_batches", "2", "--json", str(out)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  assert "no mesh: mesh sizes (data, fsdp, tensor)=(3, 1, 1) need 3 devices, have 8" in done.stdout
  records = {(r["mesh"], r["program"]): r for r in json.loads(out.read_text())}
  assert sorted(records) == sorted((mesh, program) for mesh in ("8, 1, 1", "2, 2, 2")
                                   for program in ("train_step", "prefill", "decode"))
  for record in records.values():
    _check_program(record)
    assert record["target"] == "cpu x8" and record["hbm_gib"] is None

  settings = _tiny_settings()
  update, rollout, model = settings.policy_update, settings.rollout, settings.model
  for mesh, data_parallel, tensor in (("8, 1, 1", 8, 1), ("2, 2, 2", 4, 2)):
    step, prefill, decode = (records[mesh, p] for p in ("train_step", "prefill", "decode"))
    train_state = prefill["resident_bytes"]  # the train state's shards, counted by `aot.per_device_bytes`
    assert decode["resident_bytes"] == train_state
    # XLA's count of the step's arguments: exactly the train state + this device's rows + the node arrays.
    batch = 2 * update.rows_per_micro_batch // data_parallel * update.row_length * ROW_BYTES_PER_TOKEN
    assert step["argument_bytes"] == train_state + batch + aot.NUM_NODES * (4 + 1)
    assert step["alias_bytes"] == train_state  # the donated state is updated in place
    # The decode's arguments hold this device's slots (and KV heads, over "tensor") of the KV cache.
    cache = (2 * model.num_layers * rollout.num_slots // data_parallel * rollout.context_window
             * model.num_kv_heads // tensor * model.head_dim * model.compute_dtype.itemsize)
    assert decode["argument_bytes"] > cache
    assert decode["alias_bytes"] >= cache

  # float32 parameters + two Adam moments of 0.6M parameters: ~7 MB replicated on (8, 1, 1); "fsdp" and
  # "tensor" split it 2 x 2 on (2, 2, 2) (a few small tensors stay replicated).
  replicated = records["8, 1, 1", "prefill"]["resident_bytes"]
  assert 12 * model.num_params <= replicated < 12.1 * model.num_params
  sharded = records["2, 2, 2", "prefill"]["resident_bytes"]
  assert replicated / 4 <= sharded < replicated / 3


def test_a_mesh_that_does_not_divide_the_devices_is_a_clear_error():
  devices = jax.devices()[:1]
  assert dict(aot.build_mesh(devices, (-1, 1, 1)).shape) == {"data": 1, "fsdp": 1, "tensor": 1}
  with pytest.raises(ValueError, match=r"need 2 devices, have 1"):
    aot.build_mesh(devices, (2, 1, 1))
  with pytest.raises(ValueError, match=r"1 devices cannot be split into mesh sizes \(-1, 3, 1\)"):
    aot.build_mesh(devices, (-1, 3, 1))
  with pytest.raises(ValueError, match=r"\(data, fsdp, tensor\)"):
    aot.build_mesh(devices, (1, 1))
  with pytest.raises(KeyError, match="unknown TPU topology"):
    aot.topology_devices("v9-8")


def test_tiny_programs_compile_for_a_tpu_topology(monkeypatch):
  pytest.importorskip("libtpu", reason="the TPU compiler is not installed (pip install -e '.[tpu-aot]')")
  monkeypatch.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compile only: no chip is opened (see the script)
  devices = aot.topology_devices("v5p-8")
  assert len(devices) == 4 and devices[0].platform == "tpu"
  mesh = aot.build_mesh(devices, (-1, 1, 2))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 2}
  results = aot.compile_programs(_tiny_settings(), mesh)
  assert [r.program for r in results] == ["train_step", "prefill", "decode"]
  for result in results:
    assert isinstance(result, aot.ProgramMemory), result
    record = {**vars(result), "total_bytes": result.total_bytes, "peak_bytes": result.peak_bytes}
    _check_program(record)
    assert result.code_bytes > 0  # TPU executables report their generated code
  step, prefill, _ = results
  assert step.argument_bytes >= prefill.resident_bytes  # TPU layouts may pad, never shrink, the state
