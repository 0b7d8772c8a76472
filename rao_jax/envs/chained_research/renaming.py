"""Consistent random renamings of a graph's entities, countries and numbers, for augmenting expert transcripts.

As for TextCraft (`textcraft_synth/renaming.py`): rendering an expert tree again under a seeded bijection
of names gives the transcript of an isomorphic graph, so a model can only predict a name by copying it
from its goal or an observation, never by remembering which names a question involves.

Two ways to draw the new names, matching the two tokenizations of `ChainedResearchConfig.name_tokens`:
- words (default): the bijection permutes the whole name pool (`graph.name_pool`, train and val words
  alike, so val's words are seen in training too); an entity's new name is its name with every pool
  word replaced, so new names are distinct and twins stay twins ("Botes River" / "Little Botes River").
- names: every entity takes the name of another entity of its kind, drawn without replacement from
  the names of that kind in all the splits' graphs (`whole_names`). Every new name is then a name the
  tokenizer holds as one piece; twins get unrelated names (a transcript still shows the expert picking
  the result that matches, by its attributes).

Countries are permuted among themselves. Whole entity names, their url slugs and country names are
replaced (longest first); words that merely contain a name are not. Numbers move too, so a final answer
can only be copied, never remembered: every year (a number of 3 or 4 digits) shifts by one offset and
every length ("1,240 km") by another (a multiple of 10 km on a `coarse_numbers` graph), which keeps the
world consistent (twins still differ, descriptions still single out one entity).
"""
from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from rao_jax.envs.chained_research.graph import COUNTRIES, NAME_POOL_SIZE, KnowledgeGraph, name_pool

_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d{3,4})(?!\w|,\d)(\s?km\b)?")


class EntityRenaming:
  """A seeded renaming of `graph`'s names; calling it renames every name, slug and country in a text.

  Args:
    graph: the graph whose entity names are renamed.
    seed: the renaming's seed.
    whole_names: kind -> candidate names (at least as many as `graph` has of that kind): draw each
      entity's new name whole from these; None: replace the pool words inside names.

  Attributes:
    mapping: old -> new, for every entity name, its slug and every country.
  """

  def __init__(self, graph: KnowledgeGraph, seed: int | str,
               whole_names: Mapping[str, Sequence[str]] | None = None):
    rng = random.Random(f"chained-research/renaming/{seed}")
    if whole_names is None:
      pool = list(name_pool(NAME_POOL_SIZE))
      shuffled = list(pool)
      rng.shuffle(shuffled)
      words = dict(zip(pool, shuffled))
      new_names = {name: " ".join(words.get(word, word) for word in name.split()) for name in graph.entities}
    else:
      new_names = {}
      for kind, candidates in sorted(whole_names.items()):
        names = graph.names_of_kind(kind)
        if len(set(candidates)) < len(names):
          raise ValueError(f"{len(set(candidates))} candidate {kind} names cannot rename {len(names)} entities")
        drawn = list(dict.fromkeys(candidates))
        rng.shuffle(drawn)
        new_names.update(zip(names, drawn))
      missing = set(graph.entities) - set(new_names)
      if missing:
        raise ValueError(f"whole_names has no candidates for the kinds of {sorted(missing)[:3]}")
    countries = list(COUNTRIES)
    rng.shuffle(countries)
    self.mapping: dict[str, str] = dict(zip(COUNTRIES, countries))
    for name, entity in graph.entities.items():
      self.mapping[name] = new_names[name]
      self.mapping[entity.slug] = new_names[name].lower().replace(" ", "_")
    longest_first = sorted(self.mapping, key=len, reverse=True)
    self._pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, longest_first)) + r")(?!\w)")
    self.year_shift = rng.choice([d for d in range(-40, 41) if d])
    step = 10 if graph.config.coarse_numbers else 1  # lengths stay on a coarse graph's 10 km grid
    self.length_shift = rng.choice([d for d in range(-60, 61, step) if d])

  def _shift(self, match: re.Match) -> str:
    digits, unit = match.group(1), match.group(2)
    value = int(digits.replace(",", "")) + (self.length_shift if unit else self.year_shift)
    return (f"{value:,}" if "," in digits else str(value)) + (unit or "")

  def __call__(self, text: str) -> str:
    return _NUMBER.sub(self._shift, self._pattern.sub(lambda match: self.mapping[match.group(1)], text))
