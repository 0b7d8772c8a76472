"""The jitted, sharded train step: token log-probs on packed rows, gradient accumulation, optax update.

Functional NNX throughout: the model is `(graphdef, params)` from `nnx.split`; the step is a pure
function of a `TrainState` pytree, compiled once by `jax.jit` with explicit in/out shardings and the
state donated. A batch of R packed rows is split into M micro-batches that a `lax.scan` runs one after
the other, summing (loss_sum, token_count) and the gradients of loss_sum; dividing by the batch's token
count at the end gives exactly the full-batch token mean, whatever M is.

RL losses take per-node advantages: `node_advantages` [P] float32 and `node_valid` [P] bool, device
arrays indexed by the batch's `node_index` (P: the padded node count). Inside the step each token t
gets A_t = node_advantages[node_index_t], and tokens of nodes that are not valid (groups without reward
variance) leave the loss mask, so the token mean runs over the kept tokens only. Cross-entropy takes
neither.

A step whose loss or gradient norm is not finite is skipped: params and optimiser state come back
unchanged (and the schedule's count does not advance), `metrics["skipped"]` is 1. A batch without a
loss token leaves them unchanged too. `metrics["updated"]` is 1 exactly when the update was applied.
`TrainState.step` counts the batches this step ran on, skipped and empty ones included; nothing reads it
back (the learning-rate schedule has its own count, in the optimiser state). A batch the caller drops
before the step is not counted: `PolicyUpdater.update` runs no step on a batch with bad rewards
(`train/skipped_bad_reward`), while the trainer's step, which a checkpoint records and from which the
data position and PRNG keys follow, counts every RL batch, that one included.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rao_jax import distributed
from rao_jax import sharding as sharding_lib
from rao_jax.errors import FieldError
from rao_jax.rl import losses
from rao_jax.train.packing import PackedBatch

# (log_probs, old_log_probs, advantages, mask), all [B, T] -> (loss_sum [], token_count []).
LossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
Metrics = dict[str, jax.Array]


def token_cross_entropy(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array,
                        mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Supervised loss in the RL losses' contract: (−Σ_mask log π(token), number of mask tokens).

  log_probs, old_log_probs, advantages: [B, T] float32 (the last two unused); mask: [B, T] bool.
  """
  del old_log_probs, advantages
  return -jnp.sum(jnp.where(mask, log_probs, 0.0)), jnp.sum(mask).astype(jnp.float32)


def resolve_loss(name: str) -> LossFn:
  """"cross_entropy" (supervised warm start) or an RL loss of `rao_jax.rl.losses` ("cispo", ...)."""
  return token_cross_entropy if name == "cross_entropy" else losses.get_loss(name)


@dataclasses.dataclass(frozen=True)
class TrainStepConfig:
  """What one train step computes.

  Attributes:
    loss: "cross_entropy" or the name of an RL loss ("cispo", "ppo_clip", "reinforce").
    num_micro_batches: M; a batch's rows are split into M consecutive blocks run one after the other.
    logits_chunk_size: positions per vocabulary projection (0: the whole row at once). With a chunk C the
      [rows, T, V] logits never exist at once: each [rows, C, V] block is recomputed in the backward pass.
    attention_chunk_size: queries per attention block (0: all T at once). With a chunk C the float32
      [rows, heads, T, T] scores never exist at once, in the forward or the backward pass.
    remat: recompute each decoder layer in the backward pass, storing only the layers' inputs.
    vocab_limit: ids ≥ this get probability 0, as in the sampler when the model's vocabulary is padded
      past the tokenizer's (keeps trainer and sampler log-probs comparable). None: the whole vocabulary.
    loss_options: keyword hyper-parameters of the loss, e.g. (("clip_max", 5.0),) for CISPO.
  """

  loss: str = "cispo"
  loss_options: tuple[tuple[str, float], ...] = ()
  num_micro_batches: int = 1
  logits_chunk_size: int = 0
  vocab_limit: int | None = None
  attention_chunk_size: int = 0
  remat: bool = False

  def __post_init__(self):
    if self.loss != "cross_entropy" and self.loss not in losses.LOSSES:
      raise FieldError("loss", self.loss, "is an unknown loss; expected one of "
                       + ", ".join(["cross_entropy", *sorted(losses.LOSSES)]))
    if self.num_micro_batches <= 0:
      raise ValueError(f"train.num_micro_batches={self.num_micro_batches} must be positive")
    for name in ("logits_chunk_size", "attention_chunk_size"):
      if getattr(self, name) < 0:
        raise ValueError(f"train.{name}={getattr(self, name)} must be >= 0")
    if self.vocab_limit is not None and self.vocab_limit <= 0:
      raise ValueError(f"train.vocab_limit={self.vocab_limit} must be positive or None")
    if not isinstance(self.remat, bool):
      raise ValueError(f"train.remat={self.remat!r} must be True or False")


@struct.dataclass
class TrainState:
  """Everything a train step updates."""

  params: nnx.State           # the model's parameters (`nnx.split(model)[1]`)
  opt_state: optax.OptState
  step: jax.Array             # [] int32 batches run through the step, skipped and empty ones included


def token_log_probs(model: nnx.Module, tokens: jax.Array, positions: jax.Array, segment_ids: jax.Array,
                    *, chunk_size: int = 0, vocab_limit: int | None = None, attention_chunk_size: int = 0,
                    remat: bool = False) -> jax.Array:
  """log π(token t | earlier tokens of its segment) for every position: [B, T] int32 -> [B, T] float32.

  The logits at t − 1 score token t. The first token of a segment, padding, and position 0 have no target
  and get 0. `chunk_size` > 0 (dividing T) projects to the vocabulary C positions at a time, recomputing
  each block's logits in the backward pass instead of storing them. `attention_chunk_size` and `remat` are
  the model's memory knobs (`Transformer.__call__`).
  """
  batch, length = tokens.shape
  hidden, _ = model.hidden_states(tokens, positions, segment_ids=segment_ids,
                                  query_chunk_size=attention_chunk_size, remat=remat)  # [B, T, H]
  previous = jnp.pad(hidden[:, :-1], ((0, 0), (1, 0), (0, 0)))  # [B, T, H] hidden state at t − 1

  def scored(h: jax.Array, targets: jax.Array) -> jax.Array:  # [B, C, H], [B, C] -> [B, C]
    logits = model.logits(h)  # [B, C, V] float32
    if vocab_limit is not None and vocab_limit < logits.shape[-1]:
      logits = jnp.where(jnp.arange(logits.shape[-1]) < vocab_limit, logits, -jnp.inf)
    target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return target_logits - jax.nn.logsumexp(logits, axis=-1)

  if not chunk_size or chunk_size >= length:
    log_probs = scored(previous, tokens)
  else:
    if length % chunk_size:
      raise ValueError(f"logits_chunk_size={chunk_size} must divide the row length {length}")
    chunks = length // chunk_size
    h = previous.reshape(batch, chunks, chunk_size, -1).swapaxes(0, 1)  # [n, B, C, H]
    t = tokens.reshape(batch, chunks, chunk_size).swapaxes(0, 1)  # [n, B, C]
    log_probs = jax.lax.map(jax.checkpoint(lambda ht: scored(*ht)), (h, t))  # [n, B, C]
    log_probs = log_probs.swapaxes(0, 1).reshape(batch, length)
  return jnp.where(has_target(segment_ids), log_probs, 0.0)


def has_target(segment_ids: jax.Array) -> jax.Array:
  """[B, T] int32 -> [B, T] bool: token t is scored (its predecessor is in the same, non-padding, segment)."""
  same_as_previous = segment_ids[:, 1:] == segment_ids[:, :-1]
  scored = jnp.concatenate([jnp.zeros_like(same_as_previous[:, :1]), same_as_previous], axis=1)
  return scored & (segment_ids != 0)


def token_advantages(node_index: jax.Array, loss_mask: jax.Array, node_advantages: jax.Array,
                     node_valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-token advantages and loss mask from per-node ones: A_t = A[node_index_t] and
  mask_t = loss_mask_t ∧ node_index_t >= 0 ∧ valid[node_index_t].

  node_index [B, T] int32 (−1 at padding, else < P); loss_mask [B, T] bool; node_advantages [P] float32;
  node_valid [P] bool. Returns (advantages [B, T] float32, mask [B, T] bool); advantages off the mask
  are whatever the node holds (the losses zero them).
  """
  index = jnp.maximum(node_index, 0)
  advantages = jnp.take(node_advantages, index, mode="clip")
  return advantages, loss_mask & (node_index >= 0) & jnp.take(node_valid, index, mode="clip")


def _log_prob_stats(log_probs: jax.Array, old_log_probs: jax.Array, mask: jax.Array) -> Metrics:
  """Sums / extremes of |log π − log π_old| and of the ratio exp(log π − log π_old) over the tokens of
  `mask` whose sampler log-prob is known (finite)."""
  known = mask & jnp.isfinite(old_log_probs)
  diff = jnp.where(known, log_probs - jnp.where(known, old_log_probs, 0.0), 0.0)
  ratio = jnp.exp(diff)
  return {
      "gap_tokens": jnp.sum(known).astype(jnp.float32),
      "gap_sum": jnp.sum(jnp.abs(diff)),
      "gap_max": jnp.max(jnp.abs(diff), initial=0.0),
      "ratio_sum": jnp.sum(jnp.where(known, ratio, 0.0)),
      "ratio_min": jnp.min(jnp.where(known, ratio, jnp.inf), initial=jnp.inf),
      "ratio_max": jnp.max(jnp.where(known, ratio, 0.0), initial=0.0),
  }


def _combine_stats(a: Metrics, b: Metrics) -> Metrics:
  return {k: (jnp.maximum(a[k], b[k]) if k.endswith("_max") else
              jnp.minimum(a[k], b[k]) if k.endswith("_min") else a[k] + b[k]) for k in a}


def train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, loss_fn: LossFn,
               config: TrainStepConfig, state: TrainState, batch: PackedBatch,
               node_advantages: jax.Array | None = None, node_valid: jax.Array | None = None
               ) -> tuple[TrainState, Metrics]:
  """One optimiser step on `batch` ([M, R/M, T] micro-batches); pure (compile with `make_train_step`).

  With `node_advantages` [P] and `node_valid` [P] (RL losses) tokens take their node's advantage and
  tokens of invalid nodes carry no loss (`token_advantages`); without them (cross-entropy) every
  loss-mask token counts and the advantages are 0.
  """

  def micro_loss(params: nnx.State, micro: PackedBatch) -> tuple[jax.Array, tuple[jax.Array, Metrics]]:
    model = nnx.merge(graphdef, params)
    log_probs = token_log_probs(model, micro.tokens, micro.positions, micro.segment_ids,
                                chunk_size=config.logits_chunk_size, vocab_limit=config.vocab_limit,
                                attention_chunk_size=config.attention_chunk_size, remat=config.remat)
    if node_advantages is None:
      advantages, mask = jnp.zeros_like(log_probs), micro.loss_mask
    else:
      advantages, mask = token_advantages(micro.node_index, micro.loss_mask, node_advantages, node_valid)
    loss_sum, count = loss_fn(log_probs, micro.old_log_probs, advantages, mask)
    return loss_sum, (count, _log_prob_stats(log_probs, micro.old_log_probs, mask))

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def accumulate(carry, micro: PackedBatch):
    grads_sum, loss_sum, count, stats = carry
    (micro_loss_sum, (micro_count, micro_stats)), grads = grad_fn(state.params, micro)
    grads_sum = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_sum, grads)
    return (grads_sum, loss_sum + micro_loss_sum, count + micro_count,
            _combine_stats(stats, micro_stats)), None

  zero_stats = {"gap_tokens": 0.0, "gap_sum": 0.0, "gap_max": 0.0, "ratio_sum": 0.0, "ratio_min": jnp.inf,
                "ratio_max": 0.0}
  init = (jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params), jnp.float32(0.0),
          jnp.float32(0.0), jax.tree.map(jnp.float32, zero_stats))
  (grads_sum, loss_sum, count, stats), _ = jax.lax.scan(accumulate, init, batch)

  denominator = jnp.maximum(count, 1.0)
  grads = jax.tree.map(lambda g, p: (g / denominator).astype(p.dtype), grads_sum, state.params)
  loss = loss_sum / denominator
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  apply = finite & (count > 0)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  keep_if_not_applied = lambda new, old: jnp.where(apply, new, old)
  new_state = TrainState(params=jax.tree.map(keep_if_not_applied, params, state.params),
                         opt_state=jax.tree.map(keep_if_not_applied, opt_state, state.opt_state),
                         step=state.step + 1)
  gap_tokens = jnp.maximum(stats["gap_tokens"], 1.0)
  metrics = {
      "loss": loss,
      "grad_norm": grad_norm,
      "tokens": count,
      "skipped": (~finite).astype(jnp.int32),
      "updated": apply.astype(jnp.int32),
      "log_prob_gap_mean": stats["gap_sum"] / gap_tokens,
      "log_prob_gap_max": stats["gap_max"],
      "ratio_mean": jnp.where(stats["gap_tokens"] > 0, stats["ratio_sum"] / gap_tokens, 1.0),
      "ratio_min": jnp.where(stats["gap_tokens"] > 0, stats["ratio_min"], 1.0),
      "ratio_max": jnp.where(stats["gap_tokens"] > 0, stats["ratio_max"], 1.0),
  }
  return new_state, metrics


def _check_params_only(state: nnx.State) -> None:
  variables = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  others = sorted({type(v).__name__ for v in variables if not isinstance(v, nnx.Param)})
  if others:
    raise ValueError(f"the train step updates every model variable, but the model also holds {others}")


def initial_train_state(params: nnx.State, tx: optax.GradientTransformation) -> TrainState:
  """Step 0 with a fresh optimiser state, on a copy of `params` (traceable: `create_train_state` jits it,
  `rao_jax.aot` takes its abstract shape with `jax.eval_shape`)."""
  params = jax.tree.map(jnp.copy, params)  # new buffers: the step donates them, the model keeps its own
  return TrainState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, mesh: Mesh
                       ) -> tuple[nnx.GraphDef, TrainState]:
  """Splits `model` and builds its sharded `TrainState` (step 0, fresh optimiser state) on `mesh`.

  The state holds a copy of the parameters (train steps donate it); `nnx.merge(graphdef, state.params)`
  gives the trained model back.
  """
  graphdef, params = nnx.split(model)
  _check_params_only(params)
  init = functools.partial(initial_train_state, tx=tx)
  shardings = sharding_lib.tree_shardings(jax.eval_shape(init, params), mesh)
  params = distributed.put(params, shardings.params)
  return graphdef, jax.jit(init, in_shardings=(shardings.params,), out_shardings=shardings)(params)


def batch_shardings(mesh: Mesh) -> PackedBatch:
  """Shardings of a micro-batched `PackedBatch` [M, R/M, T]: rows over ("data", "fsdp")."""
  rows = NamedSharding(mesh, PartitionSpec(None, sharding_lib.BATCH_AXES, None))
  return PackedBatch(**{field.name: rows for field in dataclasses.fields(PackedBatch)})


def _check_node_arrays(batch: PackedBatch, node_advantages: jax.Array | None, node_valid: jax.Array | None,
                       loss: str) -> None:
  """ValueError unless both are [P] arrays with P above every node_index of the host batch."""
  if node_advantages is None or node_valid is None:
    raise ValueError(f"loss {loss!r} needs node_advantages and node_valid")
  largest = int(np.max(batch.node_index, initial=-1))
  if node_advantages.ndim != 1 or node_valid.shape != node_advantages.shape or largest >= len(node_advantages):
    raise ValueError(f"node_advantages {node_advantages.shape} and node_valid {node_valid.shape} must both "
                     f"be [P] with P > every node_index of the batch (largest {largest})")


def make_train_step(graphdef: nnx.GraphDef, state: TrainState, tx: optax.GradientTransformation,
                    config: TrainStepConfig, mesh: Mesh) -> Callable[..., tuple[TrainState, Metrics]]:
  """The compiled step: `step(state, batch [R, T] on the host[, node_advantages, node_valid])`.

  Returns (new state, scalar metrics). RL losses need `node_advantages` [P] float32 and `node_valid`
  [P] bool (host or device arrays, e.g. straight from `advantages_from_trees`, never fetched; P > every
  `node_index` of the batch); cross-entropy takes neither. `state` (concrete or abstract) fixes the
  state's structure and shardings. The batch's R rows are split into `config.num_micro_batches` blocks
  whose row count must divide evenly over the data-parallel mesh axes; every process passes the whole
  batch (the same on every host) and places the rows its devices hold. `state` is donated. One program is compiled per node count P.
  """
  state_shardings = sharding_lib.tree_shardings(state, mesh)
  in_batch = batch_shardings(mesh)
  replicated = NamedSharding(mesh, PartitionSpec())
  loss_fn = functools.partial(resolve_loss(config.loss), **dict(config.loss_options))
  uses_advantages = config.loss != "cross_entropy"
  step_fn = jax.jit(
      lambda s, b, a, v: train_step(graphdef, tx, loss_fn, config, s, b, a, v),
      in_shardings=(state_shardings, in_batch, replicated, replicated),
      out_shardings=(state_shardings, replicated), donate_argnums=0)
  parallel = sharding_lib.data_parallel_size(mesh)

  def run(state: TrainState, batch: PackedBatch, node_advantages: jax.Array | None = None,
          node_valid: jax.Array | None = None) -> tuple[TrainState, Metrics]:
    if uses_advantages:
      _check_node_arrays(batch, node_advantages, node_valid, config.loss)
      node_advantages, node_valid = distributed.put((node_advantages, node_valid), (replicated, replicated))
    elif node_advantages is not None or node_valid is not None:
      raise ValueError(f"loss {config.loss!r} takes no node advantages")
    micro = batch.micro_batches(config.num_micro_batches)
    rows_per_micro = micro.tokens.shape[1]
    if rows_per_micro % parallel:
      raise ValueError(f"{rows_per_micro} rows per micro-batch do not split over {parallel} data-parallel "
                       "devices; use a row count that is a multiple of num_micro_batches × that")
    device_batch = jax.tree.map(distributed.global_array, micro, in_batch)
    return step_fn(state, device_batch, node_advantages, node_valid)

  run.jitted = step_fn  # for ahead-of-time lowering (benchmarks, cost analysis)
  return run
