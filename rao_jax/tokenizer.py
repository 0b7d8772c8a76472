"""Tokenizers: one small interface over SentencePiece (toy models) and Hugging Face (Qwen) files.

Contract shared by both kinds: `encode` adds no BOS/EOS and maps special-token strings in the text
("<|im_start|>", "<python>", ...) to their single ids; `decode(encode(s)) == s` for any text the
tokenizer's normaliser leaves unchanged (the toy SentencePiece models use the identity normaliser and
byte fallback, so every Python string round-trips; Qwen's tokenizer.json applies NFC).

A leaf module: it imports nothing from rao_jax (the agent's toy training corpus is built above it,
in `rao_jax.agent.corpus`).
"""
from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import tokenizers

# Turn markers of the toy chat layout (`rao_jax.agent.chat.ToyChatLayout`).
TOY_SYSTEM = "<|system|>"
TOY_USER = "<|user|>"
TOY_ASSISTANT = "<|assistant|>"
TOY_END_OF_TURN = "<|end|>"

# The thought and code tags of a turn, as `rao_jax.agent.turn_format` writes them (spelled out here so
# that this module imports nothing from rao_jax; tests/tokenizer checks that the two agree).
TURN_TAGS: tuple[str, ...] = ("<thought>", "</thought>", "<python>", "</python>")

# Pieces that a toy SentencePiece model keeps whole (user-defined symbols): the turn markers and the
# thought / code tags, so a turn's structure, and the `</python>` stop sequence, cost one token each.
CHAT_SPECIAL_TOKENS: tuple[str, ...] = (TOY_SYSTEM, TOY_USER, TOY_ASSISTANT, TOY_END_OF_TURN, *TURN_TAGS)

# Control ids of every SentencePiece model trained here.
SP_PAD_ID, SP_UNK_ID, SP_BOS_ID, SP_EOS_ID = 0, 1, 2, 3
_NUM_BYTE_PIECES = 256
# SentencePiece writes spaces as U+2581; a literal U+2581 in the text is encoded through its bytes.
_SP_SPACE = "\u2581"


class Tokenizer(abc.ABC):
  """Text <-> token ids. Attributes are fixed at construction."""

  vocab_size: int  # number of ids the tokenizer can produce (the model's vocab may be larger)
  pad_id: int
  eos_id: int
  bos_id: int | None
  special_tokens: Mapping[str, int]  # turn-structure pieces -> id

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, no BOS/EOS added; special-token strings map to their ids."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; special tokens decode to their strings, pad/BOS/EOS controls may vanish.

    Raises ValueError for ids outside [0, vocab_size) (a model's vocab may be padded beyond it).
    """

  def _checked(self, ids: Sequence[int]) -> list[int]:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"token ids {bad[:8]} are outside the tokenizer's vocabulary [0, {self.vocab_size})")
    return ids

  @abc.abstractmethod
  def token_id(self, piece: str) -> int:
    """Id of a special or whole piece. Raises KeyError if `piece` is not one token."""


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model, as trained by `train_sentencepiece`."""

  def __init__(self, model_file: str):
    if not os.path.isfile(model_file):
      raise FileNotFoundError(f"SentencePiece model not found: {model_file}")
    self.model_file = model_file
    self._sp = spm.SentencePieceProcessor(model_file=model_file)
    self.vocab_size = self._sp.vocab_size()
    if self._sp.pad_id() < 0 or self._sp.eos_id() < 0:
      raise ValueError(
          f"{model_file}: pad_id={self._sp.pad_id()} eos_id={self._sp.eos_id()}; the model must be "
          "trained with explicit pad and eos ids (use train_sentencepiece)")
    self.pad_id = self._sp.pad_id()
    self.eos_id = self._sp.eos_id()
    self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None
    self.special_tokens = {p: self._sp.piece_to_id(p) for p in CHAT_SPECIAL_TOKENS if self._is_piece(p)}
    self._space_byte_ids = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in _SP_SPACE.encode("utf-8")]

  def _is_piece(self, piece: str) -> bool:
    piece_id = self._sp.piece_to_id(piece)
    return self._sp.id_to_piece(piece_id) == piece and not self._sp.is_unknown(piece_id)

  def encode(self, text: str) -> list[int]:
    ids: list[int] = []
    for i, part in enumerate(text.split(_SP_SPACE)):
      if i:
        ids.extend(self._space_byte_ids)
      if part:
        ids.extend(self._sp.encode(part))
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode(self._checked(ids))

  def token_id(self, piece: str) -> int:
    if not self._is_piece(piece):
      raise KeyError(f"{piece!r} is not a single piece of {self.model_file}")
    return self._sp.piece_to_id(piece)


def _special_token_content(value: str | dict | None) -> str | None:
  """tokenizer_config.json writes a special token as a string or as {"content": ...}."""
  if isinstance(value, dict):
    return value.get("content")
  return value


class HFTokenizer(Tokenizer):
  """A Hugging Face `tokenizer.json` (e.g. Qwen3's byte-level BPE) via the `tokenizers` package.

  pad / eos / bos come from the explicit arguments, else `tokenizer_config.json` (pad_token,
  eos_token, bos_token), else `config.json` (pad_token_id, eos_token_id, bos_token_id) next to it.
  """

  def __init__(self, path: str, *, pad_id: int | None = None, eos_id: int | None = None):
    json_file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(json_file):
      raise FileNotFoundError(f"no tokenizer.json at {path}")
    self.path = path
    self._tok = tokenizers.Tokenizer.from_file(json_file)
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    self.special_tokens = {
        t.content: i for i, t in sorted(self._tok.get_added_tokens_decoder().items()) if t.special}

    directory = os.path.dirname(json_file)
    tok_config = _read_json(os.path.join(directory, "tokenizer_config.json"))
    model_config = _read_json(os.path.join(directory, "config.json"))

    def resolve(name: str, explicit: int | None) -> int | None:
      if explicit is not None:
        return explicit
      content = _special_token_content(tok_config.get(f"{name}_token"))
      if content is not None:
        return self.token_id(content)
      value = model_config.get(f"{name}_token_id")
      return value[0] if isinstance(value, list) else value

    eos = resolve("eos", eos_id)
    pad = resolve("pad", pad_id)
    if eos is None or pad is None:
      raise ValueError(
          f"{path}: cannot tell the eos/pad ids (eos={eos}, pad={pad}) from tokenizer_config.json or "
          "config.json; pass eos_id= / pad_id= explicitly")
    for name, value in (("eos_id", eos), ("pad_id", pad)):
      if not 0 <= value < self.vocab_size:
        raise ValueError(f"{path}: {name}={value} outside the vocabulary [0, {self.vocab_size})")
    self.eos_id, self.pad_id = int(eos), int(pad)
    self.bos_id = resolve("bos", None)

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode(self._checked(ids), skip_special_tokens=False)

  def token_id(self, piece: str) -> int:
    piece_id = self._tok.token_to_id(piece)
    if piece_id is None:
      raise KeyError(f"{piece!r} is not a single token of {self.path}")
    return piece_id


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load_tokenizer(path: str) -> Tokenizer:
  """`*.model` -> SentencePiece; `tokenizer.json` or a directory holding one -> Hugging Face.

  A directory without tokenizer.json but with tokenizer.model loads the SentencePiece model.
  """
  if path.endswith(".model"):
    return SentencePieceTokenizer(path)
  if path.endswith(".json"):
    return HFTokenizer(path)
  if os.path.isdir(path):
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
      return HFTokenizer(path)
    if os.path.isfile(os.path.join(path, "tokenizer.model")):
      return SentencePieceTokenizer(os.path.join(path, "tokenizer.model"))
  raise FileNotFoundError(
      f"no tokenizer at {path!r}: expected a .model file, a tokenizer.json, or a directory holding "
      "tokenizer.json or tokenizer.model")


def _lines(texts: Iterable[str], text_files: Sequence[str]) -> Iterable[str]:
  """Non-empty lines of `texts` then of `text_files` (SentencePiece trains on lines)."""
  for text in texts:
    yield from (line for line in text.split("\n") if line)
  for file in text_files:
    with open(file, encoding="utf-8") as f:
      yield from (line.rstrip("\n") for line in f if line.strip("\n"))


def train_sentencepiece(
    texts: Iterable[str] = (),
    *,
    text_files: Sequence[str] = (),
    model_prefix: str,
    vocab_size: int,
    model_type: str = "bpe",
    special_tokens: Sequence[str] = CHAT_SPECIAL_TOKENS,
    whole_words: Sequence[str] = (),
    max_sentences: int = 1_000_000,
    num_threads: int = 2,
) -> SentencePieceTokenizer:
  """Trains a SentencePiece model that round-trips any text; writes `{model_prefix}.model/.vocab`.

  Ids: pad=0, unk=1, bos=2, eos=3, then `special_tokens` (kept whole, matched in text), then `whole_words`
  (domain words kept whole the same way, e.g. a world's item names, so that copying one is copying one
  token; a whole word may hold single inner spaces, "Little Botes River", and where whole words overlap
  the longest match wins), then the 256 byte pieces and the learned pieces. The normaliser is the
  identity, whitespace is kept as is (no dummy prefix, no collapsing; runs of spaces may form pieces, for
  code indentation), digits are split, and anything unseen falls back to bytes. `vocab_size` is an upper
  bound: a small corpus may yield fewer pieces. Newlines become the byte piece <0x0A> (training reads
  lines).
  """
  symbols = list(dict.fromkeys((*special_tokens, *whole_words)))
  min_vocab = 4 + len(symbols) + _NUM_BYTE_PIECES + 1
  if vocab_size < min_vocab:
    raise ValueError(
        f"vocab_size={vocab_size} is too small: pad/unk/bos/eos, {len(special_tokens)} special tokens, "
        f"{len(symbols) - len(set(special_tokens))} whole words and {_NUM_BYTE_PIECES} byte pieces need at "
        f"least {min_vocab}")
  bad = [t for t in symbols if not t or t.strip() != t or re.search(r"\s\s|[^\S ]", t)]
  if bad:
    raise ValueError("special tokens and whole words must be non-empty, without surrounding whitespace, and "
                     f"their only inner whitespace single spaces: {bad}")
  # SentencePiece matches user symbols after it has written spaces as U+2581.
  symbols = [t.replace(" ", _SP_SPACE) for t in symbols]
  lines = list(_lines(texts, text_files))
  if not lines:
    raise ValueError("no training text: pass texts or text_files with at least one non-empty line")
  directory = os.path.dirname(model_prefix)
  if directory:
    os.makedirs(directory, exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines),
      model_prefix=model_prefix,
      vocab_size=vocab_size,
      hard_vocab_limit=False,
      model_type=model_type,
      pad_id=SP_PAD_ID,
      unk_id=SP_UNK_ID,
      bos_id=SP_BOS_ID,
      eos_id=SP_EOS_ID,
      user_defined_symbols=symbols,
      byte_fallback=True,
      character_coverage=1.0,
      normalization_rule_name="identity",
      remove_extra_whitespaces=False,
      add_dummy_prefix=False,
      split_digits=True,
      allow_whitespace_only_pieces=True,
      max_sentence_length=1 << 16,
      input_sentence_size=max_sentences,
      shuffle_input_sentence=True,
      num_threads=num_threads,
      minloglevel=2,
  )
  _drop_output_path(f"{model_prefix}.model")
  return SentencePieceTokenizer(f"{model_prefix}.model")


def _drop_output_path(model_file: str) -> None:
  """Clears the output path that SentencePiece records in the model's trainer spec.

  Training is deterministic, but the serialised model stores `model_prefix`, so the same text trained in
  two directories gave different bytes (and different checkpoint fingerprints). Without it, the bytes
  depend only on the text and the settings.
  """
  model = sentencepiece_model_pb2.ModelProto()
  with open(model_file, "rb") as f:
    model.ParseFromString(f.read())
  model.trainer_spec.ClearField("model_prefix")
  with open(model_file, "wb") as f:
    f.write(model.SerializeToString())


def matched_token_mask(tokenizer: Tokenizer, ids: Sequence[int], pattern: re.Pattern) -> np.ndarray:
  """[len(ids)] bool: the tokens whose text overlaps a match of `pattern` in the decoded sequence.

  Token i covers characters [start_i, end_i) of decode(ids), with end_i the cumulative length of the
  tokens' own decodings (exact for tokenizers whose pieces decode independently, as ours do for text
  without multi-byte characters split across byte pieces).
  """
  ends = np.cumsum([len(tokenizer.decode([int(i)])) for i in ids])
  starts = np.concatenate([[0], ends[:-1]]).astype(ends.dtype)
  mask = np.zeros(len(ids), bool)
  for match in pattern.finditer(tokenizer.decode([int(i) for i in ids])):
    mask |= (starts < match.end()) & (ends > match.start())
  return mask
