"""Trains a SentencePiece tokenizer for the toy models.

  python scripts/train_tokenizer.py --input a.txt b.txt --vocab_size 2048 --output dir/
  python scripts/train_tokenizer.py --builtin_corpus --vocab_size 1024 --output dir/

Writes dir/tokenizer.model (and tokenizer.vocab), loadable with `rao_jax.tokenizer.load_tokenizer(dir)`.
"""
from __future__ import annotations

import argparse
import os
import sys

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--input", nargs="+", default=[], help="UTF-8 text files, one sentence per line")
  parser.add_argument("--builtin_corpus", action="store_true",
                      help="also train on the deterministic built-in toy corpus")
  parser.add_argument("--vocab_size", type=int, required=True, help="upper bound on the vocabulary")
  parser.add_argument("--output", required=True, help="output directory")
  parser.add_argument("--model_type", default="bpe", choices=("bpe", "unigram"))
  args = parser.parse_args(argv)

  if not args.input and not args.builtin_corpus:
    parser.error("give --input files and/or --builtin_corpus")
  missing = [f for f in args.input if not os.path.isfile(f)]
  if missing:
    parser.error(f"--input files not found: {missing}")
  texts = corpus.builtin_corpus() if args.builtin_corpus else ()
  tok = tokenizer_lib.train_sentencepiece(
      texts, text_files=args.input, model_prefix=os.path.join(args.output, "tokenizer"),
      vocab_size=args.vocab_size, model_type=args.model_type)
  print(f"wrote {tok.model_file}: vocab_size={tok.vocab_size} pad={tok.pad_id} eos={tok.eos_id} "
        f"special={dict(tok.special_tokens)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
