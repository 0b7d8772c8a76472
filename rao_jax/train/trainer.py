"""The RAO training loop for any environment suite: rollouts → tree advantages → packed rows → train step.

One step s (0-based; the params after it are those of step s + 1):
  1. the B root tasks at positions [s·B, (s+1)·B) of the training stream (each epoch a permutation
     seeded by (seed, epoch)) are rolled out G times each with PRNG key fold_in(train_key, s);
  2. node rewards and advantages (RAO Eq. 1, 3, 4) are computed on the flat node arrays; nodes of groups
     without signal are dropped, the rest are packed into rows (micro-batches of a fixed row count, as
     many as the trees need) and one optimiser step is taken (`policy_update.PolicyUpdater`);
  3. the rollout engine receives the new parameters.
Greedy evaluation per difficulty tier runs before step 0 (the warm-start policy), every `every_steps`
steps and after the last, from the same parameters as the training rollouts (one engine, one sampling
copy of the policy). The environment suite (`rao_jax.envs.suite`) supplies the tasks, the root
environments' factory and the warm start's demonstrations; nothing here knows a particular benchmark.
Checkpoints hold the train state and the step (from which the data position and every PRNG key
follow), so a run killed at any moment and rerun resumes from its last checkpoint (the last one that
verifies: a damaged one is set aside with a warning, `train.checkpoint`) and reproduces the
uninterrupted run (same seed, same devices). A batch with NaN or out-of-range rewards is skipped by the
update (`train/skipped_bad_reward`); an evaluation's NaN success is logged as null.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
import tqdm
from flax import nnx

from rao_jax import distributed
from rao_jax.agent.chat import layout_for
from rao_jax.agent.interpreter.pool import InterpreterPool
from rao_jax.envs.suite import Suite, Task
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.engine import RolloutEngine
from rao_jax.rollout.metrics import batch_metrics, timing_metrics
from rao_jax.rollout.trees import Trees
from rao_jax.train import warm_start
from rao_jax.train.checkpoint import Checkpoints, Progress, RunIdentity, tokenizer_fingerprint
from rao_jax.train.metrics_log import MetricsLog, read_records
from rao_jax.train.policy_update import PolicyUpdater
from rao_jax.train.settings import Settings
from rao_jax.train.train_step import TrainState

EVAL_KEY_OFFSET = 1 << 30  # eval keys fold_in(base, offset + step), disjoint from the training keys


def stream_tasks(tasks: Sequence[Task], start: int, count: int, seed: int) -> list[Task]:
  """Positions [start, start + count) of the endless training stream: epoch e is a permutation of
  `tasks` drawn from numpy's generator seeded by (seed, e)."""
  n = len(tasks)
  if not n:
    raise ValueError("no training tasks")
  batch = []
  for position in range(start, start + count):
    epoch, index = divmod(position, n)
    batch.append(tasks[int(np.random.default_rng((seed, epoch)).permutation(n)[index])])
  return batch


def eval_tasks(tasks: Sequence[Task], difficulties: Sequence[str], per_difficulty: int) -> list[Task]:
  """The first `per_difficulty` tasks of each difficulty, in split order, grouped by difficulty."""
  chosen = []
  for difficulty in difficulties:
    chosen += [t for t in tasks if t.difficulty == difficulty][:per_difficulty]
  return chosen


def difficulty_tags(tasks: Sequence[Task]) -> list[dict[str, str]]:
  """Per group (task), the tag its trees carry in a trees file: {"difficulty": ...}."""
  return [{"difficulty": t.difficulty} for t in tasks]


def last_eval_success(records: Sequence[dict], before_step: int) -> float:
  """Greedy success of the last evaluation logged before `before_step` (NaN if none): what a resumed
  run shows until it evaluates again."""
  evals = [r["success"] for r in records
           if r["kind"] == "eval" and r["step"] < before_step and r.get("success") is not None]
  return evals[-1] if evals else float("nan")


def _logged_float(value: float | None) -> float:
  """A logged scalar back as a float: the log writes NaN (e.g. a success from a misbehaving judge) as null."""
  return float("nan") if value is None else float(value)


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One greedy evaluation: its metrics, its trees, and the task of each tree (tree i solves tasks[i])."""

  metrics: dict[str, float]
  trees: Trees
  tasks: list[Task]

  def write_trees(self, path: str) -> None:
    """The trees as JSON lines for the viewer, each tagged with its task's difficulty."""
    self.trees.to_jsonl(path, difficulty_tags(self.tasks))


@dataclasses.dataclass
class Run:
  """The built parts of a run: the suite, data, tokenizer, the starting policy and the mesh.

  `initial_policy` is consumed by the `Trainer` (its parameters move into the train state, and the
  module is dropped so that no second copy of the weights stays alive). `setup_times` (seconds per
  phase) and `sft_losses` (the warm start's loss per SFT step, empty if none ran) are logged by a
  fresh run.
  """

  settings: Settings
  suite: Suite
  train_tasks: list[Task]
  tokenizer: object
  layout: object
  initial_policy: nnx.Module | None
  mesh: jax.sharding.Mesh
  identity: RunIdentity
  setup_times: dict[str, float]
  sft_losses: np.ndarray


def _training_tasks(settings: Settings, split_tasks: list[Task], split: str) -> list[Task]:
  """`split_tasks` of the configured training tiers, the first `max_train_tasks` of them (0: all)."""
  tasks = [t for t in split_tasks if t.difficulty in settings.data.train_difficulties]
  if settings.data.max_train_tasks:
    tasks = tasks[:settings.data.max_train_tasks]
  if not tasks:
    raise ValueError(f"the {settings.env_name} {split} split has no tasks of {settings.data.train_difficulties}")
  return tasks


def build_run(settings: Settings, *, warm_start_policy: bool = True) -> Run:
  """Builds (or reuses from the work directory) the dataset, tokenizer and warm-start policy.

  With `warm_start_policy=False` the policy is randomly initialised instead (for callers that restore
  a checkpoint over it).
  """
  workdir = settings.workdir
  suite = settings.suite()
  fmt = settings.rollout.episode
  times = {}
  try:
    mesh = settings.mesh.build()
  except ValueError as error:
    raise ValueError(f"--config.mesh: {error}") from None
  started = time.perf_counter()
  # Files of the work directory (shared by every host) are built by the first process; the others
  # wait for it and then read them.
  if not distributed.is_primary():
    distributed.barrier("rao_jax data and tokenizer")
  data_dir = os.path.join(workdir, "data")
  split = suite.load_tasks("train", data_dir)  # the warm start picks its own tiers
  tasks = _training_tasks(settings, split if settings.data.split == "train" else
                          suite.load_tasks(settings.data.split, data_dir), settings.data.split)
  # The tokenizer learns from the warm start's demonstrations, so the RL settings (tiers, split) do not
  # change it, nor the warm start trained with it.
  tokenizer_tasks = [t for t in split if t.difficulty in settings.warm_start.data.difficulties] or tasks
  times["time/data_s"] = time.perf_counter() - started
  started = time.perf_counter()
  tokenizer_config = settings.tokenizer
  if settings.warm_start.checkpoint and not tokenizer_config.path:
    tokenizer_config = dataclasses.replace(tokenizer_config, path=settings.warm_start.checkpoint)
  tokenizer = warm_start.build_tokenizer(os.path.join(workdir, "tokenizer"), tokenizer_config, suite,
                                         tokenizer_tasks, fmt)
  if distributed.is_primary():
    distributed.barrier("rao_jax data and tokenizer")
  if tokenizer.vocab_size > settings.model.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but config.model.vocab_size is "
                     f"{settings.model.vocab_size}")
  times["time/tokenizer_s"] = time.perf_counter() - started
  layout = layout_for(tokenizer)
  started = time.perf_counter()
  losses = np.zeros([0], np.float32)
  if not warm_start_policy:
    model = Transformer(settings.model, rngs=nnx.Rngs(settings.seed))
  elif settings.warm_start.checkpoint:
    model = warm_start.imported_model(settings.warm_start.checkpoint, settings.model)
  else:
    sft_config = dataclasses.replace(settings.warm_start.sft, vocab_limit=tokenizer.vocab_size)
    model, losses = warm_start.sft_warm_start(
        os.path.join(workdir, "warm_start"), settings.model, layout, suite, split, settings.warm_start.data,
        fmt, sft_config, seed=settings.seed, mesh=mesh,
        progress_bar=settings.log.progress_bar and distributed.is_primary())
  times["time/warm_start_s"] = time.perf_counter() - started
  identity = RunIdentity(model_config=settings.model.to_dict(),
                         tokenizer_fingerprint=tokenizer_fingerprint(tokenizer))
  return Run(settings=settings, suite=suite, train_tasks=tasks, tokenizer=tokenizer, layout=layout,
             initial_policy=model, mesh=mesh, identity=identity, setup_times=times, sft_losses=losses)


class Trainer:
  """Runs RAO steps, evaluation, logging and checkpointing for one `Run` (a context manager: it owns
  the interpreter pool's processes)."""

  def __init__(self, run: Run):
    if run.initial_policy is None:
      raise ValueError("this Run's initial policy was consumed by another Trainer; build a new Run")
    self.run_parts = run
    self.settings = settings = run.settings
    model, run.initial_policy = run.initial_policy, None  # its parameters live on in the train state only
    self.updater = PolicyUpdater(model, settings.policy_update, run.mesh,
                                 vocab_limit=run.tokenizer.vocab_size)
    self.pool = InterpreterPool(settings.interpreter)
    try:
      engine_mesh = run.mesh if jax.device_count() > 1 else None
      self.engine = RolloutEngine(model, run.layout, self.pool, settings.rollout, mesh=engine_mesh)
      del model
      self._set_policy(self.state.params)
      self.checkpoints = Checkpoints(os.path.join(settings.workdir, "checkpoints"), run.identity,
                                     max_to_keep=settings.checkpoint.max_to_keep)
    except BaseException:
      self.pool.close()  # the interpreter's processes must not outlive a failed start
      raise
    self.base_key = jax.random.key(settings.seed)
    self.step = 0
    self.log: MetricsLog | None = None

  def __enter__(self) -> Trainer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    self.checkpoints.close()
    self.pool.close()
    if self.log is not None:
      self.log.close()

  # ------------------------------------------------------------------ state

  @property
  def state(self) -> TrainState:
    """The policy's train state (parameters, optimiser state, step count)."""
    return self.updater.state

  def _set_policy(self, params: nnx.State) -> None:
    self.engine.set_params(params)  # training rollouts and greedy evaluation sample from this one copy

  def restore(self, step: int | None = None) -> bool:
    """Loads the checkpoint at `step` (default: the latest that verifies) if there is one; True if one
    was loaded.

    A damaged latest checkpoint is moved aside with a warning and the previous one is loaded
    (`Checkpoints.restore`); CheckpointError if none verifies or the checkpoint is from another run.
    """
    if step is None and self.checkpoints.latest_step() is None:
      return False
    self.updater.state, progress = self.checkpoints.restore(self.state, step)
    expected_position = progress.step * self.settings.rl.tasks_per_step
    if progress.data_position != expected_position:
      raise ValueError(f"checkpoint step {progress.step} consumed {progress.data_position} tasks, but "
                       f"--config.rl.tasks_per_step={self.settings.rl.tasks_per_step} gives "
                       f"{expected_position}: "
                       "resume with the tasks_per_step the run started with")
    self.base_key = jax.random.wrap_key_data(progress.rng_key_data)
    self.step = progress.step
    self._set_policy(self.state.params)
    return True

  def save(self) -> None:
    self.checkpoints.save(self.state, Progress(
        step=self.step, data_position=self.step * self.settings.rl.tasks_per_step,
        rng_key_data=np.asarray(jax.random.key_data(self.base_key))))

  # ------------------------------------------------------------------ one RAO step

  def train_batch(self, trees: Trees) -> dict[str, float]:
    """Advantages, packing and one optimiser step on `trees` (`PolicyUpdater.update`)."""
    self.checkpoints.wait()  # an async save may still read the buffers the step donates
    return self.updater.update(trees)

  def rl_step(self) -> dict[str, float]:
    """Rolls out step `self.step`'s batch, trains on it, and advances the step."""
    s, suite = self.settings, self.run_parts.suite
    started = time.perf_counter()
    per_step = s.rl.tasks_per_step
    tasks = stream_tasks(self.run_parts.train_tasks, self.step * per_step, per_step, s.seed)
    result = self.engine.run(suite.env_name, suite.env_config, [t.to_dict() for t in tasks],
                             s.rl.samples_per_task, jax.random.fold_in(self.base_key, self.step))
    metrics = {f"rollout/{k}": v for k, v in
               batch_metrics(result.trees, [t.difficulty for t in tasks]).items()}
    metrics.update({f"rollout/{k}": v for k, v in timing_metrics(result.timings).items()})
    train_started = time.perf_counter()
    metrics.update(self.train_batch(result.trees))
    self._set_policy(self.state.params)
    metrics["time/train_s"] = time.perf_counter() - train_started
    metrics["time/step_s"] = time.perf_counter() - started
    if s.log.train_trees_every and self.step % s.log.train_trees_every == 0:
      self._write_trees(result.trees, f"train_step{self.step:06d}", tasks)
    self.step += 1
    return metrics

  # ------------------------------------------------------------------ evaluation

  def trees_path(self, name: str) -> str:
    directory = os.path.join(self.settings.workdir, "trees")
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, f"{name}.jsonl")

  def _write_trees(self, trees: Trees, name: str, tasks: Sequence[Task]) -> None:
    """Writes a trees file for the viewer (the first process only: every process has the trees)."""
    if distributed.is_primary():
      trees.to_jsonl(self.trees_path(name), difficulty_tags(tasks))

  def evaluate(self, split: str | None = None, difficulties: Sequence[str] | None = None,
               tasks_per_difficulty: int | None = None) -> Evaluation:
    """Greedy success per difficulty on held-out tasks with the current policy (one tree per task)."""
    s, suite = self.settings, self.run_parts.suite
    split = split or s.eval.split
    tasks = eval_tasks(suite.load_tasks(split, os.path.join(s.workdir, "data")),
                       difficulties or s.eval.difficulties, tasks_per_difficulty or s.eval.tasks_per_difficulty)
    if not tasks:
      raise ValueError(f"split {split!r} has no tasks of difficulties {difficulties or s.eval.difficulties}")
    result = self.engine.run(suite.env_name, suite.env_config, [t.to_dict() for t in tasks], 1,
                             jax.random.fold_in(self.base_key, EVAL_KEY_OFFSET + self.step),
                             sampling=s.greedy_rollout.sampling)
    metrics = batch_metrics(result.trees, [t.difficulty for t in tasks])
    metrics["time/eval_s"] = result.timings.total_s
    return Evaluation(metrics=metrics, trees=result.trees, tasks=tasks)

  def _log_setup(self) -> list[dict]:
    """A fresh run's set-up records: the phase times, and the warm start's loss per SFT step."""
    run = self.run_parts
    records = [self.log.write(0, "setup", run.setup_times)]
    records += [self.log.write(step, "sft", {"loss": loss}) for step, loss in enumerate(run.sft_losses)]
    return records

  def _evaluate_and_log(self) -> dict:
    evaluation = self.evaluate()
    self._write_trees(evaluation.trees, f"eval_{self.settings.eval.split}_step{self.step:06d}",
                      evaluation.tasks)
    return self.log.write(self.step, "eval", evaluation.metrics)

  # ------------------------------------------------------------------ the loop

  def train(self) -> list[dict]:
    """Runs (or resumes) the configured number of steps; returns the records written by this call."""
    s = self.settings
    num_steps = s.rl.num_steps
    resumed = self.restore()
    previous = read_records(os.path.join(s.workdir, "metrics.jsonl"))
    distributed.barrier("rao_jax metrics read")  # before the first process rewrites the file
    if self.step >= num_steps and any(r["kind"] == "eval" and r["step"] == self.step for r in previous):
      logging.info("the run in %s is complete (step %d)", s.workdir, self.step)
      return []
    if resumed:
      logging.info("resuming from the checkpoint at step %d", self.step)
    self.log = MetricsLog(s.workdir, start_step=self.step, tensorboard=s.log.tensorboard,
                          files=distributed.is_primary())
    records = [] if resumed else self._log_setup()
    bar = tqdm.tqdm(total=num_steps, initial=self.step, desc="RAO",
                    disable=not (s.log.progress_bar and distributed.is_primary()),
                    dynamic_ncols=True)
    eval_success = last_eval_success(previous, self.step)  # shown by the progress bar until the next one
    while self.step < num_steps:
      if self.step % s.eval.every_steps == 0:
        records.append(self._evaluate_and_log())
        eval_success = _logged_float(records[-1]["success"])
      step = self.step
      metrics = self.rl_step()
      records.append(self.log.write(step, "train", metrics))
      if self.step % s.checkpoint.every_steps == 0 or self.step == num_steps:
        self.save()
      bar.update(1)
      bar.set_postfix(success=f"{metrics['rollout/success']:.2f}",
                      nodes=f"{metrics['rollout/nodes_per_tree']:.1f}",
                      depth=f"{metrics['rollout/max_depth_mean']:.1f}",
                      loss=(f"{metrics['train/loss']:.3f}" if metrics.get("train/updated")
                            else "no update"),  # no group had reward variance, or a non-finite step
                      eval=f"{eval_success:.2f}")
    records.append(self._evaluate_and_log())
    bar.close()
    self.checkpoints.wait()
    return records
