"""Benchmarks the recursive rollout engine against a one-node-at-a-time loop and tunix's sampler.

All three settings run in this process on the same device with the `tiny` model shapes (vocabulary =
the toy tokenizer's) and generate the same turns:

  (a) engine:  `RolloutEngine` with S slots (continuous batching over the frontier of all trees);
  (b) naive:   the same engine with one slot, i.e. the same jitted prefill/decode programs and cache
               layout, but one node decodes at a time (a waiting parent is evicted and re-prefilled
               when its child needs the slot); run on a subset of the trees, its tokens/s is a rate;
  (c) tunix:   `tunix.generate.sampler.Sampler` over tunix's own Qwen3 with the same shapes (random
               init), on flat batches of S turns: every turn of the engine's trees becomes one prompt
               (its exact context tokens) and each batch generates the batch's mean turn length, so
               turns and generated tokens match; a flat sampler has no cross-turn cache, so it
               re-prefills each turn's context. Also run on a subset of the batches (a rate).

Workload: scripted recursive trees on TextCraft-Synth's `small` world, decoded with forced tokens (the
device does exactly the work of sampling, and every setting produces identical trees). Each root
launches `fanout[0]` children in parallel with `asyncio.gather(launch_subagent(...))`, a child at depth
d launches `fanout[d]` children, and leaves look an item up with `get_info` before they finish; every
cell runs in the sandboxed interpreter pool against the real environment.

Usage (wall times on 2 shared CPU cores; the prompts are ~830 tokens, so prefill dominates on CPU):
  python scripts/bench_rollout.py            # 128 trees (512 nodes); S = 256 and 64, naive, tunix
  python scripts/bench_rollout.py --quick    # 16 trees (64 nodes); S = 64, naive, one tunix batch
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from rao_jax import host_memory, roofline, tokenizer as tokenizer_lib
from rao_jax.agent import corpus, episode, prompts, turn_format
from rao_jax.agent.chat import layout_for
from rao_jax.agent.interpreter.pool import InterpreterConfig, InterpreterPool
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers, tasks as tasks_lib, world as world_lib
from rao_jax.model.config import get_preset
from rao_jax.model.kv_cache import PrefixTable
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.decode_state import DecodeState, resize_own_cache
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.engine import RolloutEngine, RolloutResult
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.rollout.trees import EndReason, Trees

ENV_NAME = "textcraft_synth"
ENV_CONFIG = {"world": "small"}


# --------------------------------------------------------------------------------------- workload

@dataclasses.dataclass(frozen=True)
class Workload:
  """Root tasks (one group per task) and the scripted cells each node of their trees plays."""

  tasks: tuple[dict[str, Any], ...]
  samples_per_task: int
  fanout: tuple[int, ...]

  def subset(self, num_tasks: int, samples_per_task: int) -> "Workload":
    return dataclasses.replace(self, tasks=self.tasks[:num_tasks], samples_per_task=samples_per_task)

  @property
  def num_trees(self) -> int:
    return len(self.tasks) * self.samples_per_task

  def items(self, group: int) -> list[str]:
    """Items of the group's gold plan, in plan order (sub-goals handed to children)."""
    return [item for item, _ in self.tasks[group]["gold_plan"]]

  def cells(self, group: int, path: tuple[int, ...]) -> list[str]:
    """The code cells of the node at `path` (child indices from the root) of a tree of `group`."""
    items = self.items(group)
    item = items[sum(path) % len(items)]
    depth = len(path)
    if depth < len(self.fanout):
      children = [items[(sum(path) + k + 1) % len(items)] for k in range(self.fanout[depth])]
      launches = ", ".join(f"launch_subagent({{{child!r}: 1}})" for child in children)
      return [f"results = await asyncio.gather({launches})\nprint(results)",
              f"finish('delegated {len(children)} sub-goals')"]
    return [f"info = get_info([{item!r}])\nprint(info[0]['can_craft'])",
            f"finish('checked {item}')"]


def scripted_turn(code: str) -> str:
  return turn_format.render_assistant_turn("Scripted step.", code)


def build_forcer(workload: Workload, tokenizer):
  """The engine's `TurnForcer`: the tokens of the node's next scripted turn (None past its script)."""
  cache: dict[tuple[int, tuple[int, ...]], list[list[int]]] = {}

  def force(group: int, path: tuple[int, ...], turn: int) -> list[int] | None:
    key = (group, path)
    if key not in cache:
      cache[key] = [tokenizer.encode(scripted_turn(code)) for code in workload.cells(group, path)]
    turns = cache[key]
    return turns[turn] if turn < len(turns) else None
  return force


def select_tasks(num_tasks: int) -> tuple[dict[str, Any], ...]:
  """Alternating easy and medium train tasks of the small world."""
  world = world_lib.get_world(ENV_CONFIG["world"])
  splits = tasks_lib.build_splits(world, tasks_lib.TaskConfig(num_train=200, num_val=20))
  by_difficulty = collections.defaultdict(list)
  for task in splits["train"]:
    by_difficulty[task.difficulty].append(task.to_dict())
  mixed = [t for pair in zip(by_difficulty["easy"], by_difficulty["medium"]) for t in pair]
  if num_tasks > len(mixed):
    raise ValueError(f"--tasks={num_tasks} exceeds the {len(mixed)} easy/medium train tasks")
  return tuple(mixed[:num_tasks])


def train_toy_tokenizer(tasks: Sequence[dict[str, Any]], directory: str):
  """SentencePiece (vocabulary 1024) on the built-in corpus plus a few expert transcripts and prompts."""
  texts = list(corpus.builtin_corpus(num_examples=300))
  for task in tasks[:4]:
    root = env_lib.make_root_environment(ENV_CONFIG, task)
    parts = root.prompt_parts(True)
    texts += [prompts.system_prompt(parts, delegation=True), prompts.first_user_turn(parts, step_budget=25)]
    transcript = solvers.solve(env_lib.make_root_environment(ENV_CONFIG, task), solvers.RECURSIVE)
    for node in transcript.nodes():
      for i, turn in enumerate(node.turns, start=1):
        texts += [episode.assistant_text(turn), episode.observation_text(i, turn.output or "")]
  return tokenizer_lib.train_sentencepiece(texts, model_prefix=os.path.join(directory, "toy"),
                                           vocab_size=1024)


# --------------------------------------------------------------------------------------- engine runs

@dataclasses.dataclass
class Row:
  """One line of the result table."""

  setting: str
  trees: int
  nodes: int
  turns: int
  tokens: int
  wall_s: float
  slot_utilisation: float | None = None
  note: str = ""

  @property
  def tokens_per_s(self) -> float:
    return self.tokens / self.wall_s


def engine_config(num_slots: int, args: argparse.Namespace) -> RolloutConfig:
  # Row buckets: --prefill_rows, capped at S, and S itself (the largest a round can fill).
  rows = tuple(sorted({min(r, num_slots) for r in args.prefill_rows} | {num_slots}))
  return RolloutConfig(
      num_slots=num_slots, context_window=args.context_window, completion_limit=args.completion_limit,
      max_steps_per_node=4, max_depth=len(args.fanout) + 1,
      decode_steps_per_round=args.decode_steps_per_round, refill_fraction=args.refill_fraction,
      prefill_chunk_buckets=tuple(args.prefill_chunks), prefill_row_buckets=rows,
      share_prompt_prefix=not args.no_shared_prefix, cache_window_buckets=tuple(args.cache_windows),
      sampling=SamplingConfig(temperature=1.0))


def compile_engine(engine: RolloutEngine) -> None:
  """Compiles every program shape the engine can use (all prefill buckets, decode, read_turns) at the
  state shapes of its last run (own caches short by the shared prompt prefixes)."""
  cfg, program = engine.config, engine.program
  base = engine.initial_state(jax.random.key(0), engine.shared_prompts)
  windows = {engine.cache_window(b, base.own_window) for b in (*cfg.cache_window_buckets, base.own_window)}
  for window in sorted(windows):
    state = program.resize(base, window)  # a fresh state: `base` is not donated
    for rows in cfg.prefill_row_buckets:
      for width in cfg.prefill_chunk_buckets:
        state = program.prefill(
            engine.params, state, np.full((rows,), cfg.num_slots, np.int32), np.zeros((rows, width), np.int32),
            np.zeros((rows,), np.int32), np.zeros((rows,), bool), np.zeros((rows,), np.int32),
            np.zeros((rows, cfg.completion_limit), np.int32), np.zeros((rows,), np.int32))
      jax.block_until_ready(program.read_turns(state, np.zeros((rows,), np.int32), cfg.completion_limit))
    if engine.prefix_tokens is not None:
      slots = np.full((cfg.num_slots,), cfg.num_slots, np.int32)
      state = program.install_prefix(state, slots, np.zeros_like(slots), *engine.prefix_tokens)
    state, _ = program.decode(engine.params, state, engine.stop_sequences, np.int32(1), np.int32(1))
    for other in windows - {window}:  # every resize the engine may make from this bucket
      jax.block_until_ready(program.resize(state, other).lengths)


def run_engine(setting: str, model: Transformer, tokenizer, pool: InterpreterPool, workload: Workload,
               num_slots: int, args: argparse.Namespace) -> tuple[Row, RolloutResult]:
  engine = RolloutEngine(model, layout_for(tokenizer), pool, engine_config(num_slots, args))
  # One untimed tree finds the shared prompt prefixes and compiles what only a real run reaches.
  warm = workload.subset(1, 1)
  engine.run(ENV_NAME, ENV_CONFIG, list(warm.tasks), warm.samples_per_task, jax.random.key(args.seed),
             forcer=build_forcer(warm, tokenizer))
  compile_engine(engine)
  result = engine.run(ENV_NAME, ENV_CONFIG, list(workload.tasks), workload.samples_per_task,
                      jax.random.key(args.seed), forcer=build_forcer(workload, tokenizer))
  if any(result.compiled_programs.values()):
    print(f"warning: {setting} compiled during the timed run: {result.compiled_programs}", file=sys.stderr)
  check_trees(setting, result.trees, workload)
  trees, timings = result.trees, result.timings
  row = Row(setting=setting, trees=workload.num_trees, nodes=trees.num_nodes, turns=int(trees.steps.sum()),
            tokens=int(trees.tokens_generated.sum()), wall_s=timings.total_s,
            slot_utilisation=timings.slot_utilisation)
  return row, result


def check_trees(setting: str, trees: Trees, workload: Workload) -> None:
  """Every node finished its script: the trees have the planned shape, nothing overflowed."""
  per_tree = 1
  for width in reversed(workload.fanout):
    per_tree = 1 + width * per_tree
  reasons = collections.Counter(EndReason(int(r)).name for r in trees.end_reason)
  if trees.num_nodes != workload.num_trees * per_tree or set(reasons) != {"FINISHED"}:
    raise RuntimeError(f"{setting}: expected {workload.num_trees * per_tree} finished nodes, got "
                       f"{trees.num_nodes} with end reasons {dict(reasons)}")


def _probe_state(model: Transformer, num_slots: int, config: RolloutConfig, live: int, shared: int = 0,
                 own: int | None = None) -> DecodeState:
  """A decode state with every slot generating at `live` positions, the first `shared` of them read from
  a shared prefix table (cascade attention; 0: every slot holds all its positions), own caches of `own`
  positions (a window bucket; default the whole own window)."""
  prefixes = PrefixTable.init(model.config, shared) if shared else None
  state = DecodeState.init(model.config, num_slots, config.context_window, config.completion_limit,
                           jax.random.key(0), prefixes=prefixes, shared_positions=shared)
  if own is not None:
    state = resize_own_cache(state, own)
  return state.replace(generating=np.ones((num_slots,), bool), lengths=np.full((num_slots,), live, np.int32),
                       completion_limit=np.full((num_slots,), config.context_window, np.int32),
                       prefix_length=np.full((num_slots,), shared, np.int32))


def decode_step_ms(model: Transformer, num_slots: int, args: argparse.Namespace, steps: int,
                   shared: int = 0, own: int | None = None) -> float:
  """Milliseconds per decode step of the engine's program with every slot generating half way through
  its own cache (no host work), `shared` positions of each read from a shared prompt prefix and own
  caches of `own` positions: the median of 3 calls of `steps` steps after a compiling call."""
  config = engine_config(num_slots, args)
  graphdef, params = nnx.split(model)
  program = DeviceProgram.cached(graphdef, config.sampling, model.config.vocab_size)
  own = own or config.context_window - shared
  live = shared + own // 2
  state = _probe_state(model, num_slots, config, live, shared, own)
  no_stop = np.full((1, 1), -1, np.int32)
  state, _ = program.decode(params, state, no_stop, np.int32(1), np.int32(num_slots + 1))  # compile
  times = []
  for _ in range(3):
    state = state.replace(lengths=np.full((num_slots,), live, np.int32))
    started = time.perf_counter()
    state, stats = program.decode(params, state, no_stop, np.int32(steps), np.int32(num_slots + 1))
    jax.block_until_ready(state.lengths)
    times.append((time.perf_counter() - started) / int(stats.steps))
  return 1e3 * float(np.median(times))


def prefill_ms(model: Transformer, num_slots: int, rows: int, chunk: int, args: argparse.Namespace) -> float:
  """Milliseconds of one prefill of `rows` full rows of `chunk` tokens into empty slots (median of 3)."""
  config = engine_config(num_slots, args)
  graphdef, params = nnx.split(model)
  program = DeviceProgram.cached(graphdef, config.sampling, model.config.vocab_size)
  state = _probe_state(model, num_slots, config, 0)
  inputs = (np.arange(rows, dtype=np.int32), np.ones((rows, chunk), np.int32), np.full((rows,), chunk, np.int32),
            np.ones((rows,), bool), np.full((rows,), config.completion_limit, np.int32),
            np.zeros((rows, config.completion_limit), np.int32), np.zeros((rows,), np.int32))
  state = program.prefill(params, state, *inputs)  # compile
  times = []
  for _ in range(3):
    started = time.perf_counter()
    state = program.prefill(params, state, *inputs)
    jax.block_until_ready(state.lengths)
    times.append(time.perf_counter() - started)
  return 1e3 * float(np.median(times))


# --------------------------------------------------------------------------------------- tunix

@dataclasses.dataclass(frozen=True)
class Turn:
  context: tuple[int, ...]   # the tokens the model saw before this turn
  length: int                # tokens generated in the turn


def engine_turns(trees: Trees) -> list[Turn]:
  """Every assistant turn of the trees with its context (from the loss mask's runs)."""
  turns = []
  for node in range(trees.num_nodes):
    tokens, mask, _ = trees.node_sequence(node)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
      turns.append(Turn(context=tuple(int(t) for t in tokens[:start]), length=int(end - start)))
  return turns


class _IdsTokenizer:
  """Lets tunix's sampler take exact token ids: a prompt string is the ids joined by spaces."""

  def __init__(self, pad_id: int, eos_id: int):
    self._pad, self._eos = pad_id, eos_id

  def encode(self, text: str, **_) -> list[int]:
    return [int(t) for t in text.split()]

  def decode(self, ids, **_) -> str:
    return " ".join(str(int(t)) for t in ids)

  def bos_id(self) -> int:
    return 0  # falsy: tunix prepends no BOS

  def eos_id(self) -> int:
    return self._eos

  def pad_id(self) -> int:
    return self._pad


def tunix_model(vocab_size: int):
  """tunix's Qwen3 with the tiny preset's shapes (random init)."""
  from tunix.models.qwen3 import model as qwen3_lib
  ours = get_preset("tiny")
  config = qwen3_lib.ModelConfig(
      num_layers=ours.num_layers, vocab_size=vocab_size, embed_dim=ours.hidden_size,
      hidden_dim=ours.intermediate_size, num_heads=ours.num_heads, head_dim=ours.head_dim,
      num_kv_heads=ours.num_kv_heads, rope_theta=int(ours.rope_theta), norm_eps=ours.rms_norm_eps,
      use_tied_embedding=ours.tie_embeddings)
  return qwen3_lib.Qwen3(config, rngs=nnx.Rngs(0)), config


def tunix_batches(turns: Sequence[Turn], batch_size: int) -> list[tuple[list[Turn], int]]:
  """Turns sorted by context length (least padding: tunix's best case) in batches of `batch_size`,
  each with its mean turn length (rounded) as the number of generation steps."""
  ordered = sorted(turns, key=lambda t: len(t.context))
  batches = []
  for begin in range(0, len(ordered), batch_size):
    batch = ordered[begin:begin + batch_size]
    batches.append((batch, max(1, round(sum(t.length for t in batch) / len(batch)))))
  return batches


def run_tunix(turns: Sequence[Turn], vocab_size: int, pad_id: int, batch_size: int, num_batches: int,
              args: argparse.Namespace) -> Row:
  """Times tunix's sampler on `num_batches` batches spread over the sorted turns (after a warm-up)."""
  from tunix.generate import sampler as sampler_lib
  model, config = tunix_model(vocab_size)
  batches = tunix_batches(turns, batch_size)
  chosen = [batches[i] for i in np.linspace(0, len(batches) - 1, min(num_batches, len(batches))).astype(int)]
  longest = max(len(t.context) for batch, _ in chosen for t in batch)
  steps = max(steps for _, steps in chosen)
  cache_size = _next_power_of_2(longest) + steps
  sampler = sampler_lib.Sampler(
      model, _IdsTokenizer(pad_id=pad_id, eos_id=-1),
      sampler_lib.CacheConfig(cache_size=cache_size, num_layers=config.num_layers,
                              num_kv_heads=config.num_kv_heads, head_dim=config.head_dim))

  def generate(batch: list[Turn], steps: int) -> int:
    out = sampler([" ".join(map(str, t.context)) for t in batch], max_generation_steps=steps,
                  temperature=1.0, top_p=1.0, seed=args.seed, eos_tokens=[-1], pad_output=True)
    return sum(len(tokens) for tokens in out.tokens)

  warmed = set()
  for batch, _ in chosen:  # compiles each prompt bucket (the step count is a traced value)
    bucket = _next_power_of_2(max(len(t.context) for t in batch))
    if bucket not in warmed:
      warmed.add(bucket)
      generate(batch, 1)
  started = time.perf_counter()
  generated = sum(generate(batch, steps) for batch, steps in chosen)
  wall = time.perf_counter() - started
  return Row(setting=f"tunix Sampler, batches of {batch_size}", trees=0, nodes=0,
             turns=sum(len(b) for b, _ in chosen), tokens=generated, wall_s=wall,
             note=f"{len(chosen)} of {len(batches)} batches, cache {cache_size}")


def _next_power_of_2(n: int) -> int:
  return 1 << max(0, n - 1).bit_length()


# --------------------------------------------------------------------------------------- report

def format_table(rows: Sequence[Row], naive: Row | None, tunix: Row | None) -> str:
  lines = ["| setting | trees | nodes | turns | generated tokens | wall s | tokens/s | slot utilisation "
           "| × naive | × tunix | note |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for row in rows:
    ratio = lambda base: f"{row.tokens_per_s / base.tokens_per_s:.2f}" if base else "n/a"
    util = "n/a" if row.slot_utilisation is None else f"{row.slot_utilisation:.1%}"
    lines.append(f"| {row.setting} | {row.trees or '-'} | {row.nodes or '-'} | {row.turns} | {row.tokens} "
                 f"| {row.wall_s:.1f} | {row.tokens_per_s:.0f} | {util} | {ratio(naive)} | {ratio(tunix)} "
                 f"| {row.note} |")
  return "\n".join(lines)


def format_splits(results: dict[str, RolloutResult]) -> str:
  lines = ["| setting | total s | decode s | prefill s | interpreter s | host s | rounds | decode steps "
           "| ms / decode step | evictions | prefilled tokens (padded) | cache resizes "
           "| programs compiled in the timed run |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for setting, result in results.items():
    t = result.timings
    compiled = ", ".join(f"{k} {v}" for k, v in result.compiled_programs.items())
    step_ms = 1e3 * t.decode_s / max(t.decode_steps, 1)
    lines.append(f"| {setting} | {t.total_s:.1f} | {t.decode_s:.1f} | {t.prefill_s:.1f} "
                 f"| {t.interpreter_s:.1f} | {t.host_s:.1f} | {t.rounds} | {t.decode_steps} | {step_ms:.1f} "
                 f"| {t.evictions} | {t.prefill_tokens:,} ({t.prefill_padded:,}) | {t.cache_resizes} | {compiled} |")
  return "\n".join(lines)


def format_probe(probe: dict[tuple[int, int, int], float], prefills: dict[tuple[int, int], float],
                 machine: roofline.Machine, model_config, window: int) -> str:
  """The probes against their roofline floors (`rao_jax.roofline`): a decode step reads every weight,
  every slot's own cache of W positions (as the program is written; "live" = only the half of them
  that is filled) and, with P shared positions, the prefix table once; a prefill reads the weights and
  its rows' windows and writes the chunks."""
  lines = [f"machine: {machine.describe()}", "",
           "| decode probe: S | shared positions P | own cache W | ms / step | ms / slot-step "
           "| tokens/s at full occupancy | MB / step | MFLOP / step | floor ms | fraction of floor "
           "| floor ms, live positions only |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for (num_slots, shared, own), ms in probe.items():
    cost = roofline.decode_step_cost(model_config, [own] * num_slots, shared_positions=shared)
    live = roofline.decode_step_cost(model_config, [own // 2] * num_slots, shared_positions=shared)
    floor = 1e3 * cost.floor_s(machine)
    lines.append(f"| {num_slots} | {shared} | {own} | {ms:.1f} | {ms / num_slots:.2f} | {1e3 * num_slots / ms:.0f} | "
                 f"{cost.bytes / 1e6:.0f} | {cost.flops / 1e6:.0f} | {floor:.1f} ({cost.bound(machine)}) | "
                 f"{floor / ms:.2f} | {1e3 * live.floor_s(machine):.1f} |")
  lines += ["", "| prefill probe: rows × chunk | ms | tokens/s | MB | GFLOP | floor ms | fraction of floor |",
            "|---|---:|---:|---:|---:|---:|---:|"]
  for (rows, chunk), ms in prefills.items():
    cost = roofline.prefill_cost(model_config, rows, chunk, window)
    floor = 1e3 * cost.floor_s(machine)
    lines.append(f"| {rows} × {chunk} | {ms:.1f} | {1e3 * rows * chunk / ms:,.0f} | {cost.bytes / 1e6:.0f} | "
                 f"{cost.flops / 1e9:.1f} | {floor:.1f} ({cost.bound(machine)}) | {floor / ms:.2f} |")
  return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="S = 64 only and a smaller workload")
  parser.add_argument("--slots", type=int, nargs="+", help="engine slot counts (default 256 64; quick 64)")
  parser.add_argument("--tasks", type=int, help="root tasks, alternating easy/medium (default 64; quick 8)")
  parser.add_argument("--samples", type=int, default=2, help="trees per task")
  parser.add_argument("--fanout", type=int, nargs="+", default=[3], help="children per node by depth")
  parser.add_argument("--naive_tasks", type=int, default=2, help="root tasks the naive loop runs")
  parser.add_argument("--tunix_batches", type=int,
                      help="flat batches tunix runs, 0: skip (default 2; quick 1)")
  parser.add_argument("--tunix_batch_size", type=int, default=64, help="turns per tunix batch")
  parser.add_argument("--context_window", type=int, default=1152)
  parser.add_argument("--completion_limit", type=int, default=96)
  parser.add_argument("--decode_steps_per_round", type=int, default=64)
  parser.add_argument("--refill_fraction", type=float, default=0.25)
  parser.add_argument("--prefill_chunks", type=int, nargs="+", default=[16, 32, 64, 128, 256],
                      help="prefill chunk buckets (longer chunks are split into passes)")
  parser.add_argument("--prefill_rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                      help="prefill row buckets below S (S is always one)")
  parser.add_argument("--cache_windows", type=int, nargs="*", default=[256, 512],
                      help="own-cache window buckets (RolloutConfig.cache_window_buckets; none: off)")
  parser.add_argument("--no_shared_prefix", action="store_true",
                      help="every slot holds its whole prompt (share_prompt_prefix off)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  args.slots = args.slots or ([64] if args.quick else [256, 64])
  args.tasks = args.tasks or (8 if args.quick else 64)
  if args.tunix_batches is None:
    args.tunix_batches = 1 if args.quick else 2
  args.fanout = tuple(args.fanout)
  return args


def main(argv: Sequence[str] | None = None) -> None:
  host_memory.retain_freed_host_memory()  # with RAO_JAX_HOST_MALLOC=retain only; before any JAX work
  args = parse_args(argv)
  started = time.perf_counter()
  tasks = select_tasks(args.tasks)
  workload = Workload(tasks=tasks, samples_per_task=args.samples, fanout=args.fanout)
  with tempfile.TemporaryDirectory() as directory:
    tokenizer = train_toy_tokenizer(tasks, directory)
  model_config = dataclasses.replace(get_preset("tiny"), vocab_size=tokenizer.vocab_size)
  model = Transformer(model_config, rngs=nnx.Rngs(0))
  print(f"devices {jax.devices()}, setup {time.perf_counter() - started:.0f}s; workload: "
        f"{workload.num_trees} trees, fanout {workload.fanout}", flush=True)

  rows, results = [], {}
  with InterpreterPool(InterpreterConfig()) as pool:
    for num_slots in args.slots:
      row, result = run_engine(f"engine S={num_slots}", model, tokenizer, pool, workload, num_slots, args)
      rows.append(row)
      results[row.setting] = result
      print(f"{row.setting}: {row.tokens} tokens in {row.wall_s:.1f}s", flush=True)
    naive_workload = workload.subset(args.naive_tasks, 1)
    naive, result = run_engine("naive (engine S=1)", model, tokenizer, pool, naive_workload, 1, args)
    naive.note = f"{naive_workload.num_trees} of {workload.num_trees} trees (a rate)"
    results[naive.setting] = result
    print(f"{naive.setting}: {naive.tokens} tokens in {naive.wall_s:.1f}s", flush=True)
  rows.append(naive)

  tunix = None
  if args.tunix_batches:
    turns = engine_turns(next(iter(results.values())).trees)
    try:
      tunix = run_tunix(turns, tokenizer.vocab_size, tokenizer.pad_id, args.tunix_batch_size,
                        args.tunix_batches, args)
      rows.append(tunix)
    except Exception as error:  # report why tunix could not run, keep the engine numbers
      print(f"tunix sampler failed: {type(error).__name__}: {error}", file=sys.stderr)

  machine = roofline.measure_machine()
  # Decode probes: each slot holding its whole window; reading the engine's shared prompt prefix; and
  # with own caches cut to each window bucket.
  prompts = next(iter(results.values())).shared_prompts
  shared = min(map(len, prompts)) - 1 if prompts else 0
  print(f"shared prompt prefixes: {[len(p) for p in prompts or ()]} tokens", flush=True)
  shapes = [(0, args.context_window)] + ([(shared, args.context_window - shared)] if shared else [])
  shapes += [(shared, own) for own in args.cache_windows if own < args.context_window - shared]
  probe = {(num_slots, p, own): decode_step_ms(model, num_slots, args, 20 if num_slots == 1 else 3, p, own)
           for num_slots in sorted({1, *args.slots}) for p, own in shapes}
  largest = max(args.slots)
  prefills = {(rows, chunk): prefill_ms(model, largest, rows, chunk, args)
              for rows in sorted({1, min(32, largest)}) for chunk in args.prefill_chunks}

  print()
  print(format_table(rows, naive, tunix))
  print()
  print(format_splits(results))
  print()
  print(format_probe(probe, prefills, machine, model_config, args.context_window))
  print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
  main()
