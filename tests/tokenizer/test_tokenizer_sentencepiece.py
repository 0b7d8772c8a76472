"""SentencePiece tokenizer: training options, exact round trips, special tokens, loading."""
import os
import re

import hypothesis
import hypothesis.strategies as st
import pytest

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus, turn_format


@pytest.fixture(scope="module")
def sp_tokenizer(tmp_path_factory) -> tokenizer_lib.SentencePieceTokenizer:
  prefix = str(tmp_path_factory.mktemp("sp") / "toy")
  return tokenizer_lib.train_sentencepiece(
      corpus.builtin_corpus(400), model_prefix=prefix, vocab_size=600)


def test_control_ids_are_explicit(sp_tokenizer):
  assert (sp_tokenizer.pad_id, sp_tokenizer.bos_id, sp_tokenizer.eos_id) == (
      tokenizer_lib.SP_PAD_ID, tokenizer_lib.SP_BOS_ID, tokenizer_lib.SP_EOS_ID)
  assert 300 < sp_tokenizer.vocab_size <= 600


def test_special_tokens_are_single_pieces_matched_in_text(sp_tokenizer):
  assert set(sp_tokenizer.special_tokens) == set(tokenizer_lib.CHAT_SPECIAL_TOKENS)
  ids = sorted(sp_tokenizer.special_tokens.values())
  assert ids == list(range(4, 4 + len(tokenizer_lib.CHAT_SPECIAL_TOKENS)))
  for piece, piece_id in sp_tokenizer.special_tokens.items():
    assert sp_tokenizer.encode(piece) == [piece_id]
    assert sp_tokenizer.token_id(piece) == piece_id
  stop = sp_tokenizer.token_id(turn_format.STOP_SEQUENCE)
  ids = sp_tokenizer.encode("x = 1</python>\n")
  assert ids.count(stop) == 1 and ids[-2] == stop


def test_token_id_of_unknown_piece_raises(sp_tokenizer):
  with pytest.raises(KeyError, match="not a single piece"):
    sp_tokenizer.token_id("<|im_start|>")
  with pytest.raises(KeyError):
    sp_tokenizer.token_id("<unk>")


@pytest.mark.parametrize("text", [
    "",
    " ",
    "\n",
    "  leading spaces\n\ttabs\n\n  trailing  ",
    "def f(x):\n    if x:\n        return [i ** 2 for i in range(10)]\n    return None\n",
    "a  b   c    d",
    "numbers 1234567890 and 3.14e-5",
    "unicode: héllo wörld 日本語 🎉 \u2581 literal lower-one-eighth block \u2581\u2581",
    "controls \x00\x01\x7f \r\n \u200b",
    "<thought>plan</thought>\n<python>\nprint(1)\n</python><|end|><|user|>",
])
def test_round_trip_examples(sp_tokenizer, text):
  assert sp_tokenizer.decode(sp_tokenizer.encode(text)) == text


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.text(max_size=80))
def test_round_trip_any_text(sp_tokenizer, text):
  assert sp_tokenizer.decode(sp_tokenizer.encode(text)) == text


def test_code_is_compressed(sp_tokenizer):
  turn = turn_format.render_assistant_turn("Check what I have before crafting.",
                                           "inv = view_inventory()\nprint(inv)")
  assert len(sp_tokenizer.encode(turn)) < len(turn) / 2


def test_load_tokenizer_dispatch(tmp_path, sp_tokenizer):
  assert isinstance(tokenizer_lib.load_tokenizer(sp_tokenizer.model_file),
                    tokenizer_lib.SentencePieceTokenizer)
  directory = tmp_path / "dir"
  directory.mkdir()
  os.link(sp_tokenizer.model_file, directory / "tokenizer.model")
  loaded = tokenizer_lib.load_tokenizer(str(directory))
  assert loaded.encode("print(x)") == sp_tokenizer.encode("print(x)")
  with pytest.raises(FileNotFoundError, match="no tokenizer"):
    tokenizer_lib.load_tokenizer(str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError):
    tokenizer_lib.SentencePieceTokenizer(str(tmp_path / "missing.model"))


def test_training_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match="too small"):
    tokenizer_lib.train_sentencepiece(["hello"], model_prefix=str(tmp_path / "a"), vocab_size=100)
  with pytest.raises(ValueError, match="no training text"):
    tokenizer_lib.train_sentencepiece(["", "\n"], model_prefix=str(tmp_path / "b"), vocab_size=400)
  with pytest.raises(ValueError, match="special tokens"):
    tokenizer_lib.train_sentencepiece(["hi"], model_prefix=str(tmp_path / "c"), vocab_size=400,
                                      special_tokens=(" <x>",))


def test_training_from_files_and_builtin_corpus_is_deterministic(tmp_path):
  assert corpus.builtin_corpus(50, seed=1) == corpus.builtin_corpus(50, seed=1)
  assert corpus.builtin_corpus(50, seed=1) != corpus.builtin_corpus(50, seed=2)
  corpus_file = tmp_path / "corpus.txt"
  corpus_file.write_text("\n".join(corpus.builtin_corpus(100)), encoding="utf-8")
  a = tokenizer_lib.train_sentencepiece(text_files=[str(corpus_file)], model_prefix=str(tmp_path / "a"),
                                        vocab_size=400)
  b = tokenizer_lib.train_sentencepiece(corpus.builtin_corpus(100),
                                        model_prefix=str(tmp_path / "b"), vocab_size=400)
  text = corpus.builtin_corpus(3, seed=9)[0]
  assert a.encode(text) == b.encode(text)
  # Byte-identical files from different output paths: a tokenizer retrained in another work directory
  # has the same checkpoint fingerprint.
  with open(a.model_file, "rb") as fa, open(b.model_file, "rb") as fb:
    assert fa.read() == fb.read()


def test_whole_words_are_single_pieces(tmp_path):
  words = ("t8_i1_4", "t8_i1", "raw_t2")
  tokenizer = tokenizer_lib.train_sentencepiece(corpus.builtin_corpus(100),
                                                model_prefix=str(tmp_path / "w"), vocab_size=400,
                                                whole_words=words)
  text = 'print(craft({"raw_t2": 2}, ("t8_i1_4", 2)))  # then t8_i1'
  ids = tokenizer.encode(text)
  assert tokenizer.decode(ids) == text
  for word in words:
    assert ids.count(tokenizer.token_id(word)) == 1  # the longest whole word wins: t8_i1_4, not t8_i1
  assert not set(words) & set(tokenizer.special_tokens)  # domain words are not turn structure
  with pytest.raises(ValueError, match="3 whole words"):
    tokenizer_lib.train_sentencepiece(["hi"], model_prefix=str(tmp_path / "x"), vocab_size=271,
                                      whole_words=words)
  for bad in ("t1 ", " t1", "", "t1  t2", "t1\tt2", "t1\nt2"):
    with pytest.raises(ValueError, match="whole words"):
      tokenizer_lib.train_sentencepiece(["hi"], model_prefix=str(tmp_path / "y"), vocab_size=400,
                                        whole_words=(bad,))


def test_whole_words_may_be_several_words(tmp_path):
  names = ("Botes River", "Little Botes River", "Tham Puver", "Stex")
  texts = corpus.builtin_corpus(100) + ["Little Botes River rises near Stex. Tham Puver swam the Botes River."]
  tokenizer = tokenizer_lib.train_sentencepiece(texts, model_prefix=str(tmp_path / "n"), vocab_size=500,
                                                whole_words=names)
  for name in names:
    assert len(tokenizer.encode(name)) == 1
  text = "['Little Botes River: Little Botes River rises near the city of Stex.']  finish('Tham Puver')"
  ids = tokenizer.encode(text)
  assert tokenizer.decode(ids) == text
  pieces = [tokenizer.decode([i]) for i in ids]
  assert pieces.count("Little Botes River") == 2 and "Botes River" not in pieces  # the longest name wins
  assert pieces[-2:] == ["Tham Puver", "')"] or pieces[-3:-1] == ["'", "Tham Puver"]
  # Only the exact spelling is one piece: other spacing or the name's words alone are not.
  for near in ("Tham  Puver", "Tham\tPuver", "Puver Tham", "ThamPuver"):
    assert tokenizer.decode(tokenizer.encode(near)) == near
    assert "Tham Puver" not in [tokenizer.decode([i]) for i in tokenizer.encode(near)]


def test_matched_token_mask_marks_the_tokens_of_whole_matches(sp_tokenizer):
  pattern = re.compile(r"(?<!\w)(t8_i1_4|t8_i1|raw_t2)(?!\w)")
  text = 'get_info(["t8_i1_4", "raw_t2"])  # t8_i1x is not an item'
  ids = sp_tokenizer.encode(text)
  pieces = [sp_tokenizer.decode([i]) for i in ids]
  assert "".join(pieces) == text
  mask = tokenizer_lib.matched_token_mask(sp_tokenizer, ids, pattern)
  runs = "".join(p if m else "|" for p, m in zip(pieces, mask)).split("|")
  assert [run for run in runs if run] == ["t8_i1_4", "raw_t2"]  # and not "t8_i1" inside "t8_i1x"
  assert not tokenizer_lib.matched_token_mask(sp_tokenizer, ids, re.compile("absent")).any()
