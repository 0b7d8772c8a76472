"""One local web page per entity: `wiki/<slug>`, a title, and text of fact sentences and distractors.

A page states every attribute and outgoing relation of its entity, each in one of the fact's sentence
templates (`facts.py`, picked per entity from the graph's seed; with `sentences="object_last"` always
the one that ends with the fact's object, "X is based in the city of Y."), in a shuffled order, then
`distractors` sentences that name other entities and years without stating a fact of the graph: the
entity's twin ("not to be confused with ..."), a random other entity, a year of a report.

Snippets (`search.SearchIndex`) are query-dependent, as a search engine's are.
"""
from __future__ import annotations

import dataclasses
import functools
import random
import re

from bm25s.stopwords import STOPWORDS_EN

from rao_jax.envs.chained_research import facts
from rao_jax.envs.chained_research.graph import Entity, KnowledgeGraph

URL_PREFIX = "wiki/"
_WORD = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS = frozenset(STOPWORDS_EN)

_DISTRACTORS = (
    "{s} is sometimes mentioned together with {other}.",
    "A report from {year} described {s} as {adjective}.",
    "Records about {s} were catalogued in {year}.",
    "Little else about {s} appears in the archives of {other}.",
)
_ADJECTIVES = ("influential", "obscure", "remarkable", "controversial", "well known", "overlooked")


def terms(text: str) -> list[str]:
  """Search terms of `text`: lower-cased words of two or more characters, English stopwords removed."""
  return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


@dataclasses.dataclass(frozen=True)
class Page:
  url: str
  title: str
  sentences: tuple[str, ...]

  @property
  def text(self) -> str:
    return f"{self.title}\n{' '.join(self.sentences)}"


def _fact_sentences(entity: Entity, rng: random.Random, style: str) -> list[str]:
  def template(name: str, fact: facts.Fact) -> str:
    return facts.object_last_sentence(name, fact) if style == "object_last" else rng.choice(fact.sentences)

  sentences = []
  for attribute, value in entity.attributes:
    fact = facts.attribute_fact(entity, attribute)
    sentences.append(template(attribute, fact).format(s=entity.name, o=facts.shown_value(attribute, value)))
  for relation, target in entity.relations:
    sentences.append(template(relation, facts.RELATION_FACTS[relation]).format(s=entity.name, o=target))
  rng.shuffle(sentences)
  return [facts.capitalise(s) for s in sentences]


def _distractor_sentences(entity: Entity, names: list[str], count: int, rng: random.Random) -> list[str]:
  sentences = []
  if entity.twin is not None and count:
    sentences.append(f"{entity.name} is not to be confused with {entity.twin}.")
  while len(sentences) < count:
    other = rng.choice([n for n in names if n != entity.name])
    template = rng.choice(_DISTRACTORS)
    sentences.append(facts.capitalise(template.format(
        s=entity.name, other=other, year=rng.randint(1900, 2010), adjective=rng.choice(_ADJECTIVES))))
  return sentences


def render_page(graph: KnowledgeGraph, entity: Entity, distractors: int, sentences: str = "varied") -> Page:
  """The page of `entity`; `sentences` is a `facts.SENTENCE_STYLES` name."""
  if sentences not in facts.SENTENCE_STYLES:
    raise ValueError(f"sentences={sentences!r} is not one of {facts.SENTENCE_STYLES}")
  rng = random.Random(f"chained-research/page/{graph.config.seed}/{graph.split}/{entity.name}")
  text = _fact_sentences(entity, rng, sentences) + _distractor_sentences(entity, list(graph.entities), distractors, rng)
  return Page(url=URL_PREFIX + entity.slug, title=entity.name, sentences=tuple(text))


@functools.lru_cache(maxsize=8)
def render_pages(graph: KnowledgeGraph, distractors: int, sentences: str = "varied") -> tuple[Page, ...]:
  """Every entity's page, in the graph's entity order (cached per graph)."""
  return tuple(render_page(graph, entity, distractors, sentences) for entity in graph.entities.values())

