"""Settings of the rollout engine (limits of the method spec and the engine's batching knobs)."""
from __future__ import annotations

import dataclasses

from rao_jax.errors import FieldError
from rao_jax.agent import prompts
from rao_jax.agent.episode import EpisodeFormat
from rao_jax.rollout.sampling import SamplingConfig


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """How trees are grown and decoded.

  Limits (RAO method spec, "Budgets and limits"):
    max_steps_per_node: cells a node may run (25 in the paper, independent per node).
    max_depth: root = 0; a node at max depth may not launch (its launch returns a refusal string).
    completion_limit: tokens per assistant turn.
    context_window: tokens per node sequence; a node whose sequence plus the next completion would not
      fit ends with CONTEXT_OVERFLOW and success 0 (no history truncation).
    tree_step_budget: if > 0, one budget of cells shared by the whole tree (the earlier code's option).
    tree_timeout_s: if > 0, wall-clock limit per tree; its unfinished nodes end with TIMEOUT.
    delegation: False gives the single-agent ("linear") baseline with everything else identical.
    prompt_style: "full" (rules, tool docs, turn format) or "minimal" (for models trained from
      scratch on demonstrations); see `rao_jax.agent.prompts`.

  Engine knobs:
    num_slots: S, sequences decoded together (the frontier's batch).
    decode_steps_per_round: most decode steps before control returns to the host.
    refill_fraction: decode also returns once this fraction of the generating slots has stopped, so
      finished slots are refilled (continuous batching).
    prefill_chunk_buckets / prefill_row_buckets: padded prefill shapes (few compiled programs).
    prefill_attention_chunk_size: > 0 computes a prefill's attention over blocks of this many queries,
      so rows × chunk × context float32 scores per head never exist at once (0: all at once).
    share_prompt_prefix: compute the keys and values of the prompt text nodes share (system prompt,
      tool docs: everything before the goal; one prefix for nodes that may delegate, one for nodes at
      the depth cap) once per run and store them once: a new slot starts from its prefix instead of
      prefilling it, and every decode step reads the prefix once for all slots (cascade attention).
      Slots' own caches are shorter by the shortest prefix; a node whose prompt starts with none of
      them has that much less context window.
    cache_window_buckets: own-cache lengths the decode may run at, below the full own window (empty:
      always the full one). Each round the engine resizes the slots' own caches to the smallest bucket
      that holds every busy slot's tokens plus a whole next turn, so a decode step reads about what is
      live instead of the whole window (one compiled program per bucket).
    host_shards: H, the host shards the trees and slots are split into (0: one per process). Each
      shard schedules its own trees on its own contiguous block of slots, and a process runs H /
      processes of them, so a run gives the same trees in one process with H shards as in H
      processes. H = 1 is the single-host engine.
  """

  num_slots: int = 32
  context_window: int = 2048
  completion_limit: int = 256
  max_steps_per_node: int = 25
  max_depth: int = 6
  delegation: bool = True
  prompt_style: str = "full"
  tree_step_budget: int = 0
  tree_timeout_s: float = 0.0
  decode_steps_per_round: int = 64
  refill_fraction: float = 0.25
  prefill_chunk_buckets: tuple[int, ...] = (64, 256, 1024)
  prefill_row_buckets: tuple[int, ...] = (1, 4, 16, 64)
  prefill_attention_chunk_size: int = 0
  share_prompt_prefix: bool = True
  cache_window_buckets: tuple[int, ...] = ()
  host_shards: int = 0
  sampling: SamplingConfig = SamplingConfig()

  @property
  def episode(self) -> EpisodeFormat:
    """How the nodes' episodes read and the limits that shape them."""
    return EpisodeFormat(delegation=self.delegation, max_depth=self.max_depth,
                         max_steps_per_node=self.max_steps_per_node, context_window=self.context_window,
                         prompt_style=self.prompt_style)

  def __post_init__(self):
    for name in ("num_slots", "context_window", "completion_limit", "max_steps_per_node",
                 "decode_steps_per_round"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FieldError(name, value, "must be a positive integer")
    if self.prompt_style not in prompts.PROMPT_STYLES:
      raise FieldError("prompt_style", self.prompt_style, f"is not one of {prompts.PROMPT_STYLES}")
    if isinstance(self.host_shards, bool) or not isinstance(self.host_shards, int) or self.host_shards < 0:
      raise FieldError("host_shards", self.host_shards, "must be an integer >= 0 (0 = one per process)")
    if self.max_depth < 0:
      raise FieldError("max_depth", self.max_depth, "must be >= 0")
    for name in ("tree_step_budget", "tree_timeout_s"):
      if getattr(self, name) < 0:
        raise FieldError(name, getattr(self, name), "must be >= 0 (0 = off)")
    if not 0.0 < self.refill_fraction <= 1.0:
      raise FieldError("refill_fraction", self.refill_fraction, "must be in (0, 1]")
    if self.completion_limit >= self.context_window:
      raise FieldError("completion_limit", self.completion_limit,
                       f"must be smaller than context_window={self.context_window}")
    if isinstance(self.prefill_attention_chunk_size, bool) or not isinstance(
        self.prefill_attention_chunk_size, int) or self.prefill_attention_chunk_size < 0:
      raise FieldError("prefill_attention_chunk_size", self.prefill_attention_chunk_size, "must be an integer >= 0")
    for name in ("prefill_chunk_buckets", "prefill_row_buckets"):
      buckets = getattr(self, name)
      if not buckets or any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise FieldError(name, buckets, "must be increasing positive sizes")
    buckets = self.cache_window_buckets
    if any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
      raise FieldError("cache_window_buckets", buckets, "must be increasing positive sizes")
    if buckets and buckets[-1] >= self.context_window:
      raise FieldError("cache_window_buckets", buckets,
                       f"must be smaller than context_window={self.context_window} (the full window is "
                       "always the last bucket)")
