"""Chat layouts that build a node's token sequence and record where every token came from.

A node's episode is one growing token sequence (RAO method spec, section 5):

    [prompt: system turn, first user turn, assistant prefix]            ENV
    [completion 1, exactly as sampled, never re-tokenised]              MODEL
    [assistant suffix, observation 1 as a user turn, assistant prefix]  ENV
    [completion 2]                                                      MODEL
    ...

The loss mask is the MODEL provenance, recorded as the sequence is built, never recovered by
searching decoded text for markers. With the Qwen3 layout, for example:

    <|im_start|>system\\n{rules}<|im_end|>\\n<|im_start|>user\\n{goal}<|im_end|>\\n<|im_start|>assistant\\n
    <thought>..</thought>\\n<python>..</python>                                         <- MODEL
    <|im_end|>\\n<|im_start|>user\\n[Cell 1 Output]\\n..<|im_end|>\\n<|im_start|>assistant\\n
"""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence

import numpy as np

from rao_jax import tokenizer as tokenizer_lib

SYSTEM, USER, ASSISTANT = "system", "user", "assistant"


class Provenance(enum.IntEnum):
  """Who wrote a token: the environment (prompts, observations, chat markup) or the policy."""

  ENV = 0
  MODEL = 1


@dataclasses.dataclass
class Conversation:
  """One node's token sequence with per-token provenance and sampler log-probabilities.

  `logprobs[t]` is the sampler's log pi_old of MODEL token t (NaN if unknown, e.g. an expert trace)
  and 0.0 for ENV tokens.
  """

  ids: list[int] = dataclasses.field(default_factory=list)
  provenance: list[Provenance] = dataclasses.field(default_factory=list)
  logprobs: list[float] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return len(self.ids)

  def append_env(self, ids: Sequence[int]) -> None:
    """Appends environment-written tokens (no loss)."""
    self.ids.extend(int(i) for i in ids)
    self.provenance.extend([Provenance.ENV] * len(ids))
    self.logprobs.extend([0.0] * len(ids))

  def append_model(self, ids: Sequence[int], logprobs: Sequence[float] | None = None) -> None:
    """Appends tokens sampled from the policy, as sampled, with their sampler log-probs."""
    if logprobs is not None and len(logprobs) != len(ids):
      raise ValueError(f"{len(ids)} model tokens but {len(logprobs)} log-probs")
    self.ids.extend(int(i) for i in ids)
    self.provenance.extend([Provenance.MODEL] * len(ids))
    self.logprobs.extend([math.nan] * len(ids) if logprobs is None else [float(x) for x in logprobs])

  def truncate(self, length: int) -> None:
    """Drops every token from index `length` on."""
    del self.ids[length:], self.provenance[length:], self.logprobs[length:]

  def token_ids(self) -> np.ndarray:
    return np.asarray(self.ids, dtype=np.int32)  # [T]

  def loss_mask(self) -> np.ndarray:
    """True exactly at MODEL tokens."""
    return np.asarray(self.provenance, dtype=np.int8) == Provenance.MODEL  # [T] bool

  def sampler_logprobs(self) -> np.ndarray:
    return np.asarray(self.logprobs, dtype=np.float32)  # [T]

  def spans(self) -> list[tuple[Provenance, int, int]]:
    """Maximal runs of equal provenance as (provenance, start, end), end exclusive."""
    runs: list[tuple[Provenance, int, int]] = []
    for t, p in enumerate(self.provenance):
      if runs and runs[-1][0] == p:
        runs[-1] = (p, runs[-1][1], t + 1)
      else:
        runs.append((p, t, t + 1))
    return runs

  def last_model_ids(self) -> list[int]:
    """The tokens of the trailing MODEL run (the latest completion), or [] if the sequence ends in ENV."""
    start = len(self.provenance)
    while start > 0 and self.provenance[start - 1] == Provenance.MODEL:
      start -= 1
    return self.ids[start:]


class ChatLayout:
  """Renders turns as `{role_open[role]}{text}{turn_close}` and tokenises the ENV parts.

  Subclasses fix the markers for one tokenizer family. `prompt_ids` starts a node, and
  `continuation_ids` is what follows each completion. A completion that already ended with the
  turn-close marker token (e.g. the model emitted Qwen's `<|im_end|>`) does not get a second one.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, role_open: Mapping[str, str],
               turn_close: str, close_marker: str):
    if not turn_close.startswith(close_marker):
      raise ValueError(f"turn_close={turn_close!r} must start with close_marker={close_marker!r}")
    self.tokenizer = tokenizer
    self.role_open = dict(role_open)
    self.turn_close = turn_close
    self.close_marker = close_marker
    self.close_marker_id = tokenizer.token_id(close_marker)

  def render_turn(self, role: str, text: str) -> str:
    if role not in self.role_open:
      raise ValueError(f"unknown role {role!r}; known: {sorted(self.role_open)}")
    return f"{self.role_open[role]}{text}{self.turn_close}"

  def prompt_text(self, system: str, user: str) -> str:
    """System turn (left out when `system` is empty), first user turn, opening of the assistant turn."""
    system_turn = self.render_turn(SYSTEM, system) if system else ""
    return system_turn + self.render_turn(USER, user) + self.role_open[ASSISTANT]

  def prompt_ids(self, system: str, user: str) -> list[int]:
    return self.tokenizer.encode(self.prompt_text(system, user))

  def continuation_text(self, observation: str, completion_ids: Sequence[int]) -> str:
    """Closes the assistant turn, adds `observation` as a user turn, opens the next assistant turn."""
    ended = len(completion_ids) > 0 and int(completion_ids[-1]) == self.close_marker_id
    close = self.turn_close[len(self.close_marker):] if ended else self.turn_close
    return close + self.render_turn(USER, observation) + self.role_open[ASSISTANT]

  def continuation_ids(self, observation: str, completion_ids: Sequence[int]) -> list[int]:
    return self.tokenizer.encode(self.continuation_text(observation, completion_ids))

  def start(self, system: str, user: str) -> Conversation:
    """A new node's conversation holding its prompt (all ENV)."""
    conversation = Conversation()
    conversation.append_env(self.prompt_ids(system, user))
    return conversation

  def add_turn(self, conversation: Conversation, completion_ids: Sequence[int],
               logprobs: Sequence[float] | None, observation: str | None) -> list[int]:
    """Appends a completion (MODEL) and, unless `observation` is None (the node ended), the ENV
    continuation; returns the continuation's ids (the tokens to prefill next)."""
    conversation.append_model(completion_ids, logprobs)
    if observation is None:
      return []
    continuation = self.continuation_ids(observation, completion_ids)
    conversation.append_env(continuation)
    return continuation


class ToyChatLayout(ChatLayout):
  """`<|system|>..<|end|><|user|>..<|end|><|assistant|>` with the toy SentencePiece markers."""

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer):
    markers = (tokenizer_lib.TOY_SYSTEM, tokenizer_lib.TOY_USER, tokenizer_lib.TOY_ASSISTANT,
               tokenizer_lib.TOY_END_OF_TURN)
    _require_single_tokens(tokenizer, markers, "train it with rao_jax.tokenizer.CHAT_SPECIAL_TOKENS")
    super().__init__(
        tokenizer,
        role_open={SYSTEM: tokenizer_lib.TOY_SYSTEM, USER: tokenizer_lib.TOY_USER,
                   ASSISTANT: tokenizer_lib.TOY_ASSISTANT},
        turn_close=tokenizer_lib.TOY_END_OF_TURN, close_marker=tokenizer_lib.TOY_END_OF_TURN)


QWEN_IM_START = "<|im_start|>"
QWEN_IM_END = "<|im_end|>"
# What Qwen3's chat template puts after the assistant header when thinking is switched off.
QWEN_EMPTY_THINK = "<think>\n\n</think>\n\n"


class Qwen3ChatLayout(ChatLayout):
  """Qwen's ChatML: `<|im_start|>{role}\\n{text}<|im_end|>\\n`, generation prompt `<|im_start|>assistant\\n`.

  `empty_think_block=True` appends Qwen3's empty `<think>` block to each assistant prefix, as the hybrid
  Qwen3 chat template does with `enable_thinking=False`; leave it off for the Instruct-2507 models.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, empty_think_block: bool = False):
    _require_single_tokens(tokenizer, (QWEN_IM_START, QWEN_IM_END), "use a Qwen tokenizer.json")
    assistant = f"{QWEN_IM_START}{ASSISTANT}\n" + (QWEN_EMPTY_THINK if empty_think_block else "")
    super().__init__(
        tokenizer,
        role_open={SYSTEM: f"{QWEN_IM_START}{SYSTEM}\n", USER: f"{QWEN_IM_START}{USER}\n",
                   ASSISTANT: assistant},
        turn_close=f"{QWEN_IM_END}\n", close_marker=QWEN_IM_END)


def _require_single_tokens(tokenizer: tokenizer_lib.Tokenizer, pieces: Sequence[str], hint: str) -> None:
  missing = []
  for piece in pieces:
    try:
      tokenizer.token_id(piece)
    except KeyError:
      missing.append(piece)
  if missing:
    raise ValueError(f"the tokenizer has no single token for {missing}; {hint}")


def layout_for(tokenizer: tokenizer_lib.Tokenizer) -> ChatLayout:
  """Qwen3ChatLayout if the tokenizer knows `<|im_start|>`, else ToyChatLayout."""
  if QWEN_IM_START in tokenizer.special_tokens:
    return Qwen3ChatLayout(tokenizer)
  return ToyChatLayout(tokenizer)
