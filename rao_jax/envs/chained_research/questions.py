"""Multi-hop questions from random walks over the graph, their tiers, and the seeded splits.

A question of k hops (k in 2..6, difficulty "{k}hop") is a walk e0 -r1-> e1 -...-> ek without repeats:

- e0 is described by the smallest combination of two or more of its attributes that no other entity
  of its kind shares ("the painter from Norvania born in 1921"; twins share all but one);
- each relation wraps the description ("the city where ... was born");
- the question asks an attribute of ek that is hard to guess (`ASKED_ATTRIBUTE`: a year, a date or a
  length; "In what year was the founder of ... founded?").

Answering takes k + 2 lookups, each needing the previous one's answer: resolve e0 (its start question),
follow r1..rk (relation sub-questions about the previous hop's entity), read the attribute. These are
the task's `hops`, each with its canonical sub-question and answer (`facts.py`).

Kept questions pass two checks on the split's search index (`search.py`):
- solvable: for every hop, a search for its sub-question ranks the hop's page first and that page's
  snippet states the answer (the experts rely on it);
- not single-search: no top-`single_search_k` result for the question text itself mentions the gold
  answer or an alias in its title or snippet, and the question text does not either.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from typing import Any, Mapping

from rao_jax.envs.chained_research import facts, scoring
from rao_jax.envs.chained_research.graph import Entity, GraphConfig, KnowledgeGraph, ATTRIBUTES, get_graph
from rao_jax.envs.chained_research.search import SearchIndex, get_index

MIN_HOPS, MAX_HOPS = 2, 6
# The attribute a question asks of its last entity, per kind: a year, a date or a length, never a
# country, profession, genre or field, which a guess among a handful of values would often hit.
ASKED_ATTRIBUTE = {"person": "birth_year", "organisation": "founded", "city": "founded", "river": "length_km",
                   "work": "year", "event": "date", "award": "established"}
DIFFICULTIES = tuple(f"{k}hop" for k in range(MIN_HOPS, MAX_HOPS + 1))
# "rl": a third graph, for RL tasks the warm start never saw (its facts cannot be recalled, only read).
SPLITS = ("train", "val", "rl")


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """A graph and how its pages and search snippets read (`pages.py`, `search.py`).

  Attributes:
    graph: the graph's config.
    distractors: distractor sentences per page.
    snippet_chars: the longest snippet a search result shows.
    sentences: how a page states each fact (`facts.SENTENCE_STYLES`): "varied" (one of the fact's
      templates, drawn per page) or "object_last" (always the template ending with the fact's object).
  """

  graph: GraphConfig = GraphConfig()
  distractors: int = 2
  snippet_chars: int = 200
  sentences: str = "varied"

  def __post_init__(self):
    if not 0 <= self.distractors <= 8:
      raise ValueError(f"distractors must be in [0, 8], got {self.distractors}")
    if not 40 <= self.snippet_chars <= 1000:
      raise ValueError(f"snippet_chars must be in [40, 1000], got {self.snippet_chars}")
    if self.sentences not in facts.SENTENCE_STYLES:
      raise ValueError(f"sentences must be one of {facts.SENTENCE_STYLES}, got {self.sentences!r}")

  def index(self, split: str) -> SearchIndex:
    return get_index(self.graph, split, self.distractors, self.sentences)


@dataclasses.dataclass(frozen=True)
class QuestionConfig:
  """How many questions of each tier a split has, and how they are sampled and filtered."""

  seed: int = 0
  train_per_difficulty: int = 100
  val_per_difficulty: int = 30
  single_search_k: int = 5
  attempts_per_question: int = 60

  def __post_init__(self):
    for name in ("train_per_difficulty", "val_per_difficulty", "single_search_k", "attempts_per_question"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

  def per_difficulty(self, split: str) -> int:
    """Questions a tier: `val_per_difficulty` on "val", `train_per_difficulty` on the training splits."""
    return self.val_per_difficulty if split == "val" else self.train_per_difficulty


@dataclasses.dataclass(frozen=True)
class Hop:
  """One lookup: its canonical sub-question, its answer (then aliases), and the entity whose page answers it."""

  question: str
  answers: tuple[str, ...]
  entity: str


@dataclasses.dataclass(frozen=True)
class Task:
  """One question: its text, gold answer and aliases, the lookups that answer it, tier and split."""

  question: str
  answers: tuple[str, ...]
  hops: tuple[Hop, ...]
  difficulty: str
  split: str

  @property
  def answer(self) -> str:
    return self.answers[0]

  @property
  def num_hops(self) -> int:
    return len(self.hops) - 2

  def to_dict(self) -> dict[str, Any]:
    return {"question": self.question, "answers": list(self.answers), "difficulty": self.difficulty,
            "split": self.split, "hops": [{"question": h.question, "answers": list(h.answers), "entity": h.entity}
                                          for h in self.hops]}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Task":
    hops = tuple(Hop(question=str(h["question"]), answers=tuple(map(str, h["answers"])), entity=str(h["entity"]))
                 for h in d["hops"])
    task = cls(question=str(d["question"]), answers=tuple(map(str, d["answers"])), hops=hops,
               difficulty=str(d["difficulty"]), split=str(d["split"]))
    if task.difficulty not in DIFFICULTIES or task.split not in SPLITS or not task.answers:
      raise ValueError(f"not a chained research task: {dict(d)!r}")
    return task


@dataclasses.dataclass(frozen=True)
class ResearchPreset:
  """A named setting: the corpus and the questions asked of it (one tfds builder config each)."""

  corpus: CorpusConfig
  questions: QuestionConfig


PRESETS: Mapping[str, ResearchPreset] = {
    # The CPU preset: ~135 entities a graph, short pages (one distractor), snippets <= 120 characters,
    # every fact in its object-last sentence (a hop's answer ends its snippet). 50 held-out questions a
    # tier (20 until dataset 1.3.0): with 20, a paired before/after difference of 0.2 on one tier was
    # within noise.
    "tiny": ResearchPreset(CorpusConfig(GraphConfig(coarse_numbers=True), distractors=1, snippet_chars=120,
                                        sentences="object_last"),
                           QuestionConfig(train_per_difficulty=120, val_per_difficulty=50)),
    # The paper-scale setting: larger graphs, longer pages, 50 held-out questions per tier.
    "paper": ResearchPreset(
        CorpusConfig(GraphConfig(people=120, organisations=40, cities=30, rivers=16, works=50, events=30,
                                 awards=16, countries=8), distractors=3, snippet_chars=200),
        QuestionConfig(train_per_difficulty=200, val_per_difficulty=50)),
}


# ------------------------------------------------------------------------------------ descriptions


@functools.lru_cache(maxsize=8)
def start_descriptions(graph: KnowledgeGraph) -> Mapping[str, tuple[str, ...]]:
  """Entity name -> the smallest combination of at least two attributes (one for an event, which has
  only its date) that singles it out within its kind, the first in the order of `graph.ATTRIBUTES`;
  entities no combination singles out are absent."""
  result = {}
  for kind, attributes in ATTRIBUTES.items():
    entities = graph.of_kind(kind)
    for entity in entities:
      for size in range(min(2, len(attributes)), len(attributes) + 1):
        found = next((combo for combo in itertools.combinations(attributes, size)
                      if sum(all(o.attribute(a) == entity.attribute(a) for a in combo) for o in entities) == 1),
                     None)
        if found is not None:
          result[entity.name] = found
          break
  return result


def relation_hop(entity: Entity, relation: str) -> Hop:
  """The lookup of `entity`'s `relation`: answered by the target's name, on `entity`'s page."""
  return Hop(facts.RELATION_FACTS[relation].question.format(s=entity.name), (entity.relation(relation),),
             entity.name)


def attribute_hop(entity: Entity, attribute: str) -> Hop:
  """The lookup of `entity`'s `attribute`: answered by its value's forms, on `entity`'s page."""
  fact = facts.attribute_fact(entity, attribute)
  return Hop(fact.question.format(s=entity.name), facts.answer_forms(attribute, entity.attribute(attribute)),
             entity.name)


@functools.lru_cache(maxsize=8)
def sub_question_answers(graph: KnowledgeGraph) -> Mapping[str, tuple[str, ...]]:
  """Every canonical sub-question of `graph` (whitespace-collapsed, lower case) -> its answer forms:
  the start question of every describable entity and every relation and attribute question."""
  table: dict[str, tuple[str, ...]] = {}
  descriptions = start_descriptions(graph)
  for entity in graph.entities.values():
    if entity.name in descriptions:
      table[question_key(facts.start_question(entity, descriptions[entity.name]))] = (entity.name,)
    for relation, _ in entity.relations:
      hop = relation_hop(entity, relation)
      table[question_key(hop.question)] = hop.answers
    for attribute, _ in entity.attributes:
      hop = attribute_hop(entity, attribute)
      table[question_key(hop.question)] = hop.answers
  return table


def question_key(text: str) -> str:
  """How goals are compared with canonical questions: whitespace collapsed, lower case."""
  return " ".join(text.split()).lower()


# --------------------------------------------------------------------------------------- sampling


def _walk(graph: KnowledgeGraph, start: Entity, hops: int, rng: random.Random) -> list[tuple[Entity, str]] | None:
  """(entity, relation followed from it) for `hops` steps from `start` without revisiting, or None."""
  steps, seen, entity = [], {start.name}, start
  for _ in range(hops):
    options = [(r, t) for r, t in entity.relations if t not in seen]
    if not options:
      return None
    relation, target = rng.choice(options)
    steps.append((entity, relation))
    seen.add(target)
    entity = graph.entities[target]
  return steps


def _sample(graph: KnowledgeGraph, hops: int, rng: random.Random) -> Task | None:
  descriptions = start_descriptions(graph)
  start = graph.entities[rng.choice(sorted(descriptions))]
  steps = _walk(graph, start, hops, rng)
  if steps is None:
    return None
  last = graph.entities[steps[-1][0].relation(steps[-1][1])]
  attribute = ASKED_ATTRIBUTE[last.kind]
  description = facts.describe(start, descriptions[start.name])
  for _, relation in steps:
    description = facts.RELATION_FACTS[relation].phrase.format(x=description)
  final = attribute_hop(last, attribute)
  question = facts.capitalise(facts.attribute_fact(last, attribute).question.format(s=description))
  chain = [Hop(facts.start_question(start, descriptions[start.name]), (start.name,), start.name)]
  chain += [relation_hop(e, r) for e, r in steps]
  return Task(question=question, answers=final.answers, hops=tuple(chain) + (final,),
              difficulty=f"{hops}hop", split=graph.split)


def solvable(task: Task, index: SearchIndex, snippet_chars: int) -> bool:
  """Whether a search for each hop's sub-question ranks the hop's page first with a snippet that states
  the answer."""
  for hop in task.hops:
    hits = index.search(hop.question, 1, snippet_chars)
    if not hits or hits[0].page.title != hop.entity or not scoring.mentions(hits[0].snippet, hop.answers):
      return False
  return True


def single_search_answers(task: Task, index: SearchIndex, k: int, snippet_chars: int) -> bool:
  """Whether the question text or a top-`k` result for it (title or snippet) mentions the gold answer."""
  texts = [task.question] + [f"{h.page.title} {h.snippet}" for h in index.search(task.question, k, snippet_chars)]
  return any(scoring.mentions(text, task.answers) for text in texts)


@dataclasses.dataclass
class SplitReport:
  """What sampling a split did: questions kept per tier, and how many candidates each check dropped."""

  kept: dict[str, int] = dataclasses.field(default_factory=dict)
  dropped_single_search: int = 0
  dropped_unsolvable: int = 0
  dropped_duplicate: int = 0
  dead_end_walks: int = 0

  @property
  def candidates(self) -> int:
    return sum(self.kept.values()) + self.dropped_single_search + self.dropped_unsolvable + self.dropped_duplicate


def build_split(preset: ResearchPreset, split: str, exclude: frozenset[str] = frozenset()
                ) -> tuple[list[Task], SplitReport]:
  """The questions of `split`, tier by tier (deterministic), and what the filters dropped. Question texts
  in `exclude` (the train split's, when building val) count as duplicates: the graphs differ, so the same
  text would have another answer."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
  corpus, config = preset.corpus, preset.questions
  graph = get_graph(corpus.graph, split)
  index = corpus.index(split)
  rng = random.Random(f"chained-research/questions/{config.seed}/{split}")
  report, tasks, seen = SplitReport(), [], set(exclude)
  wanted = config.per_difficulty(split)
  for hops in range(MIN_HOPS, MAX_HOPS + 1):
    kept = 0
    for _ in range(wanted * config.attempts_per_question):
      if kept == wanted:
        break
      task = _sample(graph, hops, rng)
      if task is None:
        report.dead_end_walks += 1
      elif task.question in seen:
        report.dropped_duplicate += 1
      elif not solvable(task, index, corpus.snippet_chars):
        report.dropped_unsolvable += 1
      elif single_search_answers(task, index, config.single_search_k, corpus.snippet_chars):
        report.dropped_single_search += 1
      else:
        seen.add(task.question)
        tasks.append(task)
        kept += 1
    report.kept[f"{hops}hop"] = kept
  return tasks, report


@functools.lru_cache(maxsize=8)
def _cached_split(preset_name: str, split: str) -> tuple[tuple[Task, ...], SplitReport]:
  exclude = frozenset(t.question for t in _cached_split(preset_name, "train")[0]) if split == "val" else frozenset()
  tasks, report = build_split(PRESETS[preset_name], split, exclude)
  return tuple(tasks), report


def build_splits(preset_name: str) -> dict[str, list[Task]]:
  """Every split of a named preset (cached per process)."""
  if preset_name not in PRESETS:
    raise ValueError(f"unknown preset {preset_name!r}; known: {sorted(PRESETS)}")
  return {split: list(_cached_split(preset_name, split)[0]) for split in SPLITS}


def split_report(preset_name: str, split: str) -> SplitReport:
  return _cached_split(preset_name, split)[1]
