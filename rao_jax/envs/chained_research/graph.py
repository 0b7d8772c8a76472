"""A seeded knowledge graph of fictional entities, with near-duplicates that force disambiguation.

Seven kinds of entity, each with attributes and functional relations (one target per relation):

    person        profession, birth_year, country      born_in -> city, member_of -> organisation,
                                                      won -> award
    organisation  founded, country                    founder -> person, based_in -> city
    city          founded, country                    river -> river
    river         length_km, country                  source -> city
    work          genre, year                         creator -> person
    event         date (ISO "YYYY-MM-DD")             held_in -> city, organiser -> organisation
    award         field, established                  given_by -> organisation

Names are made of invented words from a fixed pool (`NAME_POOL`, the same for every graph), so a
tokenizer can keep each word whole and renamed copies can draw from the same words. A share of the
entities of every kind (`near_duplicate_fraction`) has a *twin*: a similar name (a shared word) and
mostly the same attributes, so an entity is only pinned down by a combination of attributes.

A graph is a pure function of its `GraphConfig` and a split name: the train and val graphs of one
config are two different graphs (different entities, relations and pages).
"""
from __future__ import annotations

import dataclasses
import functools
import random
import types
from typing import Mapping

KINDS = ("person", "organisation", "city", "river", "work", "event", "award")
# Each kind's relations: (relation, target kind).
RELATIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "person": (("born_in", "city"), ("member_of", "organisation"), ("won", "award")),
    "organisation": (("founder", "person"), ("based_in", "city")),
    "city": (("river", "river"),),
    "river": (("source", "city"),),
    "work": (("creator", "person"),),
    "event": (("held_in", "city"), ("organiser", "organisation")),
    "award": (("given_by", "organisation"),),
}
# Each kind's attributes, in the order a start description prefers them.
ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "person": ("profession", "birth_year", "country"),
    "organisation": ("country", "founded"),
    "city": ("country", "founded"),
    "river": ("country", "length_km"),
    "work": ("genre", "year"),
    "event": ("date",),
    "award": ("field", "established"),
}

PROFESSIONS = ("painter", "chemist", "architect", "poet", "composer", "engineer", "historian", "sculptor",
               "botanist", "astronomer")
GENRES = ("novel", "film", "opera", "symphony", "play")
FIELDS = ("painting", "chemistry", "architecture", "poetry", "music", "engineering")
ORGANISATION_KINDS = ("Press", "Institute", "Society", "Guild", "Foundation")
EVENT_KINDS = ("Congress", "Summit", "Festival", "Fair")
AWARD_KINDS = ("Prize", "Medal")
WORK_ADJECTIVES = ("Silent", "Golden", "Hollow", "Distant", "Crimson", "Winter", "Broken", "Quiet", "Northern",
                   "Last", "Bright", "Hidden")
WORK_NOUNS = ("Harbor", "Garden", "Lantern", "Mirror", "Orchard", "Tower", "Voyage", "Meadow", "Bridge",
              "Letter", "Shore", "Circle")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("n", "r", "s", "l", "m", "x")


@functools.lru_cache(maxsize=None)
def name_pool(size: int = 480) -> tuple[str, ...]:
  """`size` distinct invented words ("Velmor", "Dask"), the same on every call: every name is made of them."""
  rng = random.Random("chained-research/name-pool")
  words: dict[str, None] = {}
  while len(words) < size:
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 2))))
    word = (word + rng.choice(_CODAS)).capitalize()
    if 4 <= len(word) <= 7:
      words[word] = None
  return tuple(words)


NAME_POOL_SIZE = 480
COUNTRIES = ("Norvania", "Calestra", "Ostrelia", "Vandoria", "Meridia", "Tolvaria", "Kestrana", "Brevonia")


@dataclasses.dataclass(frozen=True)
class GraphConfig:
  """How many entities of each kind a graph has, and its seed.

  Attributes:
    seed: the graph's seed (a split's graph also depends on the split name).
    people, organisations, cities, rivers, works, events, awards: entities of each kind before twins.
    countries: how many of `COUNTRIES` the attributes draw from.
    near_duplicate_fraction: the share of entities of each kind that get a twin.
    coarse_numbers: cities are founded in 1800-1990 like organisations (not 900-1800), and river
      lengths are multiples of 10 km (twins differ by 10-30 km, not 37-111): every number a corpus
      and its renamed copies can show is then one of `number_words()`, few enough for a tokenizer to
      hold each as one piece (the tiny preset).
  """

  seed: int = 0
  people: int = 40
  organisations: int = 14
  cities: int = 12
  rivers: int = 8
  works: int = 14
  events: int = 10
  awards: int = 8
  countries: int = 5
  near_duplicate_fraction: float = 0.3
  coarse_numbers: bool = False

  def __post_init__(self):
    for kind, count in self.counts().items():
      limit = 60 if kind == "work" else 150  # work titles come from a small word list
      if not 2 <= count <= limit:
        raise ValueError(f"the number of {kind} entities must be in [2, {limit}], got {count}")
    if not 2 <= self.countries <= len(COUNTRIES):
      raise ValueError(f"countries must be in [2, {len(COUNTRIES)}], got {self.countries}")
    if not 0.0 <= self.near_duplicate_fraction <= 1.0:
      raise ValueError(f"near_duplicate_fraction must be in [0, 1], got {self.near_duplicate_fraction}")

  def counts(self) -> dict[str, int]:
    return {"person": self.people, "organisation": self.organisations, "city": self.cities,
            "river": self.rivers, "work": self.works, "event": self.events, "award": self.awards}


@dataclasses.dataclass(frozen=True)
class Entity:
  """One entity: its unique name, kind, attribute values, relation targets (entity names), and twin."""

  name: str
  kind: str
  attributes: tuple[tuple[str, str | int], ...]
  relations: tuple[tuple[str, str], ...] = ()
  twin: str | None = None

  def attribute(self, name: str) -> str | int:
    return dict(self.attributes)[name]

  def relation(self, name: str) -> str:
    return dict(self.relations)[name]

  @property
  def slug(self) -> str:
    return self.name.lower().replace(" ", "_")


@dataclasses.dataclass(frozen=True, eq=False)
class KnowledgeGraph:
  """The entities of one graph, by name, in generation order."""

  config: GraphConfig
  split: str
  entities: Mapping[str, Entity]

  def of_kind(self, kind: str) -> list[Entity]:
    return [e for e in self.entities.values() if e.kind == kind]

  def names_of_kind(self, kind: str) -> tuple[str, ...]:
    return tuple(e.name for e in self.of_kind(kind))

  def name_words(self) -> tuple[str, ...]:
    """The pool words that occur in this graph's entity names."""
    pool = set(name_pool(NAME_POOL_SIZE))
    return tuple(dict.fromkeys(w for name in self.entities for w in name.split() if w in pool))


class _Namer:
  """Draws unused names: pool words are handed out without replacement per graph."""

  def __init__(self, rng: random.Random):
    self._rng = rng
    self._words = list(name_pool(NAME_POOL_SIZE))
    rng.shuffle(self._words)
    self.used: set[str] = set()

  def word(self) -> str:
    if not self._words:
      raise ValueError("the name pool is exhausted; use fewer entities")
    return self._words.pop()

  def claim(self, name: str) -> bool:
    if name in self.used:
      return False
    self.used.add(name)
    return True


def _base_name(kind: str, namer: _Namer, rng: random.Random) -> str:
  for _ in range(1000):
    if kind == "person":
      name = f"{namer.word()} {namer.word()}"
    elif kind == "organisation":
      name = f"{namer.word()} {rng.choice(ORGANISATION_KINDS)}"
    elif kind == "city":
      name = namer.word()
    elif kind == "river":
      name = f"{namer.word()} River"
    elif kind == "work":
      name = f"The {rng.choice(WORK_ADJECTIVES)} {rng.choice(WORK_NOUNS)}"
    elif kind == "event":
      name = f"{namer.word()} {rng.choice(EVENT_KINDS)}"
    else:
      name = f"{namer.word()} {rng.choice(AWARD_KINDS)}"
    if namer.claim(name):
      return name
  raise ValueError(f"no unused {kind} name left; use fewer {kind} entities")


def _twin_name(kind: str, name: str, namer: _Namer, rng: random.Random) -> str | None:
  """A similar, unused name (one word shared), or None if none is found."""
  words = name.split()
  for _ in range(20):
    if kind == "person":
      candidate = f"{namer.word()} {words[1]}"
    elif kind == "city":
      candidate = f"New {name}"
    elif kind == "river":
      candidate = f"Little {name}"
    elif kind == "work":
      candidate = f"The {words[1]} {rng.choice(WORK_NOUNS)}"
    else:
      kinds = {"organisation": ORGANISATION_KINDS, "event": EVENT_KINDS, "award": AWARD_KINDS}[kind]
      candidate = f"{words[0]} {rng.choice(kinds)}"
    if namer.claim(candidate):
      return candidate
  return None


# `GraphConfig.coarse_numbers`: the numbers a coarse corpus shows, with every shift a renamed copy may
# add (`renaming.EntityRenaming`: years by up to 40, lengths by up to 60 km). Years: attributes 1800-2000,
# twins +-3, distractor sentences 1900-2010. Lengths: 100-3,000 km, twins +-30. Days of dates: 1-28.
_COARSE_YEARS = range(1750, 2051)
_COARSE_LENGTHS = range(10, 3101, 10)
_DAYS = range(10, 32)  # one-digit days are single digit pieces already


def number_words() -> tuple[str, ...]:
  """Every number a coarse-number corpus (or a renamed copy of it) can show, as its text is written:
  years ("1851"), lengths without their unit ("1,240"), two-digit days ("12")."""
  return tuple(dict.fromkeys([str(y) for y in _COARSE_YEARS] + [f"{v:,}" for v in _COARSE_LENGTHS]
                             + [str(d) for d in _DAYS]))


def _attributes(kind: str, countries: tuple[str, ...], rng: random.Random,
                coarse: bool = False) -> dict[str, str | int]:
  if kind == "person":
    return {"profession": rng.choice(PROFESSIONS), "birth_year": rng.randint(1850, 1990),
            "country": rng.choice(countries)}
  if kind == "organisation":
    return {"country": rng.choice(countries), "founded": rng.randint(1800, 1990)}
  if kind == "city":
    return {"country": rng.choice(countries), "founded": rng.randint(1800, 1990) if coarse else rng.randint(900, 1800)}
  if kind == "river":
    return {"country": rng.choice(countries),
            "length_km": rng.randint(10, 300) * 10 if coarse else rng.randint(80, 3200)}
  if kind == "work":
    return {"genre": rng.choice(GENRES), "year": rng.randint(1880, 2000)}
  if kind == "event":
    return {"date": f"{rng.randint(1880, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
  return {"field": rng.choice(FIELDS), "established": rng.randint(1850, 1990)}


def _twin_attributes(kind: str, attributes: dict[str, str | int], rng: random.Random,
                     coarse: bool = False) -> dict[str, str | int]:
  """The twin shares every attribute but one number, which moves a little (or a date's year)."""
  twin = dict(attributes)
  numeric = [name for name, value in attributes.items() if type(value) is int]
  if numeric:
    name = numeric[-1]
    step = (10 if coarse else 37) if name == "length_km" else 1
    twin[name] = attributes[name] + rng.choice((-3, -2, -1, 1, 2, 3)) * step
  else:  # an event's date: same day, another year
    year, rest = str(attributes["date"]).split("-", 1)
    twin["date"] = f"{int(year) + rng.choice((-2, -1, 1, 2))}-{rest}"
  return twin


def generate_graph(config: GraphConfig, split: str) -> KnowledgeGraph:
  """The knowledge graph of `config` for `split` (deterministic)."""
  rng = random.Random(f"chained-research/graph/{config.seed}/{split}")
  namer = _Namer(rng)
  countries = COUNTRIES[:config.countries]
  drafts: dict[str, tuple[str, dict, str | None]] = {}  # name -> (kind, attributes, twin)
  for kind, count in config.counts().items():
    for _ in range(count):
      name = _base_name(kind, namer, rng)
      attributes = _attributes(kind, countries, rng, config.coarse_numbers)
      drafts[name] = (kind, attributes, None)
      if rng.random() < config.near_duplicate_fraction:
        twin = _twin_name(kind, name, namer, rng)
        if twin is not None:
          drafts[name] = (kind, attributes, twin)
          drafts[twin] = (kind, _twin_attributes(kind, attributes, rng, config.coarse_numbers), name)
  by_kind = {kind: [name for name, (k, _, _) in drafts.items() if k == kind] for kind in KINDS}
  entities = {}
  for name, (kind, attributes, twin) in drafts.items():
    relations = tuple((relation, rng.choice([t for t in by_kind[target] if t != name]))
                      for relation, target in RELATIONS[kind])
    entities[name] = Entity(name=name, kind=kind, attributes=tuple(attributes.items()), relations=relations,
                            twin=twin)
  return KnowledgeGraph(config=config, split=split, entities=entities)


@functools.lru_cache(maxsize=8)
def get_graph(config: GraphConfig, split: str) -> KnowledgeGraph:
  """The (per-process cached) graph of `config` for `split`."""
  return generate_graph(config, split)


@functools.lru_cache(maxsize=8)
def entity_names(config: GraphConfig, splits: tuple[str, ...]) -> Mapping[str, tuple[str, ...]]:
  """kind -> the entity names of that kind in the graphs of `config` for `splits`, in order, once each
  (read-only: the result is cached)."""
  graphs = [get_graph(config, split) for split in splits]
  return types.MappingProxyType(
      {kind: tuple(dict.fromkeys(name for g in graphs for name in g.names_of_kind(kind))) for kind in KINDS})
