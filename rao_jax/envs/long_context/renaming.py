"""Seeded renamings of the cast for augmented demonstrations.

A renamed copy of an expert tree replaces every character name by another character name and every
player name by another player name (one bijection per copy, whole words only), in goals, code, thoughts
and observations alike. The copy is the transcript of an isomorphic campaign, so a policy trained on
many copies can only write the right name in a sub-goal by copying it from its own goal, and only count
a character's rolls by matching the name it was given.
"""
from __future__ import annotations

import random
import re

from rao_jax.envs.long_context.sessions import CHARACTERS, PLAYERS


class CastRenaming:
  """A seeded bijection of character names and of player names, applied to text."""

  def __init__(self, variant: str):
    rng = random.Random(f"long_context/rename/{variant}")
    self.mapping = {}
    for pool in (CHARACTERS, PLAYERS):
      shuffled = list(pool)
      rng.shuffle(shuffled)
      self.mapping.update(zip(pool, shuffled))
    self._pattern = re.compile(r"\b(" + "|".join(map(re.escape, self.mapping)) + r")\b")

  def __call__(self, text: str) -> str:
    return self._pattern.sub(lambda match: self.mapping[match.group(1)], text)
