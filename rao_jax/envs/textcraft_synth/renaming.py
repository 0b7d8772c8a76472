"""Consistent random renamings of a world's items, for augmenting expert transcripts.

A model trained from scratch on a few hundred expert transcripts can lower its loss by memorising which
items each goal involves, and then never learns to read the goal and the recipes it looks up (measured:
docs/results.md). Rendering an expert node again under a random bijection of item names gives the
transcript of an isomorphic world: the goal, every recipe the node reads, every craft it writes and its
finish message change together, so the transcript still solves exactly what it observes, but an item
name can only be predicted by copying it from the context.

Base materials are permuted among base materials and crafted items among crafted items, so a name still
tells which kind of item it is. Only whole names are replaced ("t8_i1" inside "t8_i1_4" is not).
"""
from __future__ import annotations

import functools
import random
import re

from rao_jax.envs.textcraft_synth.world import World


@functools.lru_cache(maxsize=8)
def item_name_pattern(names: tuple[str, ...]) -> re.Pattern:
  """A regex whose group 1 matches any of `names` as a whole word (longest name first)."""
  longest_first = sorted(names, key=len, reverse=True)
  return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, longest_first)) + r")(?!\w)")


class ItemRenaming:
  """A seeded bijection of `world`'s item names; calling it renames every item name in a text.

  Attributes:
    mapping: old name -> new name, for every item of the world (base to base, crafted to crafted).
  """

  def __init__(self, world: World, seed: int | str):
    rng = random.Random(f"textcraft-synth/renaming/{seed}")
    base = sorted(world.base_items)
    crafted = sorted(set(world.items) - set(base))
    self.mapping: dict[str, str] = {}
    for names in (base, crafted):
      shuffled = list(names)
      rng.shuffle(shuffled)
      self.mapping.update(zip(names, shuffled))
    self._pattern = item_name_pattern(tuple(sorted(self.mapping)))

  def __call__(self, text: str) -> str:
    return self._pattern.sub(lambda match: self.mapping[match.group(1)], text)
