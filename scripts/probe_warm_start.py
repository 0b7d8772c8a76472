"""Does a warm-start policy read its context? Teacher-forced accuracy on held-out expert transcripts.

  python scripts/probe_warm_start.py --config configs/textcraft.py:tiny [--config.a.b=...] \
      [--split val --difficulty easy --num_tasks 16 --solver flat] [--curve_every 50]

Renders the flat (or, with --solver recursive, the delegating) expert's transcripts of held-out tasks,
every node of their trees, exactly as the warm start was trained on them
(`sft.build_sft_sequences`, without augmented copies) and reports the policy's argmax next-token accuracy
on its own tokens, split into the goal's item name, later item names and all other tokens
(`rao_jax.train.probe`). A policy that learned the protocol but not to copy items from the goal and the
observations scores high on the others and near zero on item names, and then cannot solve a task it
has not memorised.

Without `--curve_every` the probed policy is the run's warm start (built first if the work directory has
none). With `--curve_every k` the script instead trains a fresh warm start exactly as the run would
(same data, model, SFT settings and seed; nothing is saved) and probes it every k SFT steps: the
learning curve of copying.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from rao_jax import host_memory
from rao_jax.envs.textcraft_synth.renaming import item_name_pattern
from rao_jax.model.transformer import Transformer
from rao_jax.train import probe, sft, trainer
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/textcraft.py:preset)")
_SPLIT = flags.DEFINE_string("split", "val", "split of the held-out tasks")
_DIFFICULTY = flags.DEFINE_string("difficulty", "easy", "difficulty of the held-out tasks")
_NUM_TASKS = flags.DEFINE_integer("num_tasks", 16, "number of held-out tasks")
_SOLVER = flags.DEFINE_enum("solver", "flat", ["flat", "recursive"], "the expert whose transcripts are probed")
_CURVE_EVERY = flags.DEFINE_integer("curve_every", 0, "> 0: train a fresh warm start and probe it every "
                                    "this many SFT steps (config.warm_start.sft.num_steps in all)")


def _accuracy_cells(result: probe.ProbeResult) -> str:
  return " | ".join(f"{result.accuracy(kind):.3f}" for kind in probe.TOKEN_KINDS)


def main(argv: Sequence[str]) -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  del argv
  logging.set_verbosity(logging.WARNING)
  settings = settings_from_config(_CONFIG.value)
  curve = _CURVE_EVERY.value > 0
  run = trainer.build_run(settings, warm_start_policy=not curve)
  suite, fmt = run.suite, settings.rollout.episode
  tasks = [t for t in suite.load_tasks(_SPLIT.value, f"{settings.workdir}/data")
           if t.difficulty == _DIFFICULTY.value][:_NUM_TASKS.value]
  data = dataclasses.replace(settings.warm_start.data, recursive_fraction=float(_SOLVER.value == "recursive"),
                             difficulties=(_DIFFICULTY.value,), max_tasks_per_difficulty=0, augmented_copies=0)
  held_out = sft.build_sft_sequences(suite, tasks, run.layout, data, fmt)
  pattern = item_name_pattern(suite.whole_words())
  measure = lambda model: probe.teacher_forced_accuracy(model, held_out, run.tokenizer, pattern)
  print(f"{len(held_out)} {_SOLVER.value} expert sequences of {len(tasks)} {_SPLIT.value} {_DIFFICULTY.value} tasks")
  if not curve:
    result = measure(run.initial_policy)
    print("| policy tokens | count | argmax accuracy |\n|---|---|---|")
    for kind in probe.TOKEN_KINDS:
      print(f"| {kind} | {result.total[kind]} | {result.accuracy(kind):.3f} |")
    return

  train_split = suite.load_tasks("train", f"{settings.workdir}/data")
  conversations = sft.build_sft_sequences(suite, train_split, run.layout, settings.warm_start.data, fmt)
  sft_config = dataclasses.replace(settings.warm_start.sft, vocab_limit=run.tokenizer.vocab_size)
  print(f"SFT on {len(conversations)} expert sequences, {sft_config.num_steps} steps", flush=True)
  start = time.perf_counter()
  probing = 0.0  # seconds spent probing so far, kept off the SFT clock

  def report(steps_done: int, model: nnx.Module) -> None:
    nonlocal probing
    jax.block_until_ready(nnx.state(model))  # steps run asynchronously: finish them on the SFT clock
    probe_start = time.perf_counter()
    result = measure(model)
    if steps_done == 0:
      header = " | ".join(f"{kind} ({result.total[kind]})" for kind in probe.TOKEN_KINDS)
      print(f"| SFT step | {header} | SFT wall time (without probes) |\n|---|---|---|---|---|")
    sft_time = probe_start - start - probing
    print(f"| {steps_done} | {_accuracy_cells(result)} | {sft_time:.0f} s |", flush=True)
    probing += time.perf_counter() - probe_start

  model = Transformer(settings.model, rngs=nnx.Rngs(settings.seed))
  sft.train_sft(model, conversations, sft_config, mesh=run.mesh, probe=report, probe_every=_CURVE_EVERY.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
