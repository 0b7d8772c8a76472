"""Compiles a preset's train step, prefill and decode ahead of time and prints their memory per device.

    python scripts/compile_tpu.py --config configs/textcraft.py:qwen3_4b --topology v5p-8 --topology v6e-8
    python scripts/compile_tpu.py --config configs/textcraft.py:qwen3_4b --topology v5p-8 --mesh 1,1,4 \
        --prefill 32,4096 --prefill 16,4096
    python scripts/compile_tpu.py --config configs/textcraft.py:qwen3_4b --topology v6e-8 --mesh 1,1,8 \
        --config.rollout.num_slots=64 --config.policy_update.rows_per_micro_batch=4 --prefill 16,4096
    python scripts/compile_tpu.py --config configs/textcraft.py:tiny --cpu_devices 8   # no libtpu needed

docs/tpu_memory.md has the results of these and what they mean.

`--topology` compiles for the compile-only devices of a TPU slice (`rao_jax.aot.TOPOLOGIES`; needs
`pip install -e '.[tpu-aot]'`, no TPU); `--cpu_devices N` for N simulated CPU devices (the fallback:
same programs and layouts, but CPU XLA's buffer assignment and no HBM to compare with). Each `--mesh
data,fsdp,tensor` is compiled in turn (default: the config's `mesh` section, the trainer's mesh); any
`--config.a.b=` override of the training config applies, e.g. remat or chunk sizes. Nothing is
allocated and no checkpoint is read (the qwen3_4b preset's required checkpoint path gets a placeholder).

Columns (GiB per device, `rao_jax.aot.ProgramMemory`): arguments, temporaries, outputs (less those
aliased to donated arguments) and the program's total (with generated code); "resident": buffers that
stay allocated beside the program (the train state during rollouts, the engine's parameter copy during
the train step); "peak" = total + resident, compared with the HBM libtpu lets a program use. A program
the TPU compiler refuses (its temporaries alone exceed HBM) is a row with the compiler's message.
"""
from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # TPU topologies compile through libtpu, not a TPU backend
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# libtpu takes a machine-wide lock (/tmp/libtpu_lockfile) so that two processes do not drive the same
# chips; compiling for a topology opens no chip, so several compiles (or a test) may run at once.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import itertools  # noqa: E402
import json  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rao_jax import aot  # noqa: E402
from rao_jax.train.settings import CHECKPOINT_PRESETS, settings_from_config  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/<suite>.py:preset)")
_TOPOLOGY = flags.DEFINE_multi_string("topology", [], f"TPU slice to compile for: {sorted(aot.TOPOLOGIES)}")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "also compile for this many simulated CPU devices")
_MESH = flags.DEFINE_multi_string("mesh", [], "data,fsdp,tensor sizes (one may be -1); "
                                  "default: the config's mesh section")
_MICRO_BATCHES = flags.DEFINE_integer(
    "micro_batches", 2, "train-step micro-batches M (rows = M x rows_per_micro_batch); every M >= 2 needs the "
    "same temporaries, M = 1 less (no accumulation loop)")
_PREFILL = flags.DEFINE_multi_string("prefill", [], "rows,chunk of a prefill to compile (default: the largest "
                                     "row bucket x the largest chunk bucket)")
_PREFILL_ROWS_SPLIT = flags.DEFINE_bool(
    "prefill_rows_split", False, "compile the prefill with its rows split over the data axes (an alternative "
    "layout; the engine replicates them today)")
_PROGRAMS = flags.DEFINE_list("programs", ["train_step", "prefill", "decode"], "programs to compile")
_JSON = flags.DEFINE_string("json", "", "also write every result to this JSON file")

NO_CHECKPOINT = "(ahead-of-time compile: no checkpoint is read)"


def _ints(text: str, count: int, flag: str) -> tuple[int, ...]:
  try:
    values = tuple(int(v) for v in text.split(","))
  except ValueError:
    values = ()
  if len(values) != count:
    raise app.UsageError(f"--{flag}={text!r}: expected {count} comma-separated integers")
  return values


def _gib(n: int) -> str:
  return f"{n / aot.GiB:.2f}"


def _row(preset: str, target: str, mesh: str, hbm_gib: float | None,
         result: aot.ProgramMemory | aot.CompileFailure) -> str:
  hbm = "-" if hbm_gib is None else f"{hbm_gib:g}"
  if isinstance(result, aot.CompileFailure):
    message = result.error.replace("|", "/").replace("\n", " ")[:300]
    return (f"| {preset} | {target} | {mesh} | {result.program} | {result.shape} | - | - | - | - | - | - | {hbm} | "
            f"no: {message} | {result.compile_s:.1f} |")
  if hbm_gib is None:
    fits = "n/a (CPU)"
  else:
    fits = "yes" if result.peak_bytes <= hbm_gib * aot.GiB else "no"
  return (f"| {preset} | {target} | {mesh} | {result.program} | {result.shape} | {_gib(result.argument_bytes)} | "
          f"{_gib(result.temp_bytes)} | {_gib(result.output_bytes - result.alias_bytes)} | "
          f"{_gib(result.total_bytes)} | {_gib(result.resident_bytes)} | {_gib(result.peak_bytes)} | {hbm} | "
          f"{fits} | {result.compile_s:.1f} |")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _TOPOLOGY.value and not _CPU_DEVICES.value:
    raise app.UsageError("give at least one --topology or --cpu_devices")
  cfg = _CONFIG.value
  if not cfg.warm_start.checkpoint:
    cfg.warm_start.checkpoint = NO_CHECKPOINT if cfg.preset in CHECKPOINT_PRESETS else ""
  settings = settings_from_config(cfg)
  meshes = [_ints(m, 3, "mesh") for m in _MESH.value] or [settings.mesh.sizes]
  prefills = [_ints(p, 2, "prefill") for p in _PREFILL.value] or None

  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)  # before any backend starts
  targets = []  # (name, devices, HBM GiB per device or None)
  for name in _TOPOLOGY.value:
    if name not in aot.TOPOLOGIES:
      raise app.UsageError(f"--topology={name!r} is not one of {sorted(aot.TOPOLOGIES)}")
    if not aot.libtpu_available():
      raise app.UsageError(f"--topology={name} needs libtpu (pip install -e '.[tpu-aot]'); without it, "
                           "--cpu_devices N compiles the same programs on simulated CPU devices")
    targets.append((name, aot.topology_devices(name), aot.TOPOLOGIES[name].hbm_gib))
  if _CPU_DEVICES.value:
    cpus = jax.devices("cpu")
    targets.append((f"cpu x{len(cpus)}", cpus, None))

  print(f"preset {settings.preset}: {settings.model.num_params / 1e6:,.1f}M parameters, "
        f"micro-batches M = {_MICRO_BATCHES.value}; jax {jax.__version__}\n")
  print("| preset | target | mesh (data, fsdp, tensor) | program | compiled shapes | args GiB | temp GiB "
        "| output GiB | total GiB | resident GiB | peak GiB | HBM/chip GiB | fits? | compile s |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  records = []
  for name, devices, hbm_gib in targets:
    for shape in meshes:
      try:
        mesh = aot.build_mesh(devices, shape)
      except ValueError as error:
        print(f"| {settings.preset} | {name} | {shape} | - | - | - | - | - | - | - | - | - | no mesh: {error} | - |",
              flush=True)
        continue
      mesh_text = ", ".join(str(mesh.shape[a]) for a in ("data", "fsdp", "tensor"))
      results = aot.compile_each(settings, mesh, num_micro_batches=_MICRO_BATCHES.value,
                                 prefill_shapes=prefills, prefill_rows_split=_PREFILL_ROWS_SPLIT.value,
                                 programs=_PROGRAMS.value)
      try:
        first = next(results, None)
      except ValueError as error:  # rows or slots that do not split over the mesh: nothing compiled
        print(f"| {settings.preset} | {name} | {mesh_text} | - | - | - | - | - | - | - | - | - | no: {error} | - |",
              flush=True)
        continue
      for result in itertools.chain([first] if first else [], results):
        print(_row(settings.preset, name, mesh_text, hbm_gib, result), flush=True)
        record = {"preset": settings.preset, "target": name, "mesh": mesh_text, "hbm_gib": hbm_gib,
                  **{k: v for k, v in vars(result).items()}}
        if isinstance(result, aot.ProgramMemory):
          record.update(total_bytes=result.total_bytes, peak_bytes=result.peak_bytes)
        records.append(record)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(records, f, indent=1)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
