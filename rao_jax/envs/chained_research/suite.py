"""Chained multi-hop research (the DeepDive stand-in) as an environment suite.

A config's `env` section mirrors `ChainedResearchConfig`:

    env.name = "chained_research"
    env.dataset                 the preset of graph, pages and questions (`questions.PRESETS`), also the
                                tfds builder config of the tasks ("tiny", "paper")
    env.result_style            what search_web returns per result ("full" dicts or "compact" strings)
    env.transcript_style        how the expert writes its cells ("spec" or "compact"; `solvers.py`)
    env.expert_max_results      max_results of the compact expert's searches
    env.name_tokens             what a trained tokenizer keeps whole: name "words" or whole entity "names"

Augmented demonstration copies rename the graph's entities and countries (`renaming.EntityRenaming`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from rao_jax.errors import FieldError
from rao_jax.envs.base import DemoNode, renamed_nodes
from rao_jax.envs.suite import Suite
from rao_jax.envs.chained_research import dataset, graph, solvers
from rao_jax.envs.chained_research.env import RESULT_STYLES
from rao_jax.envs.chained_research.graph import COUNTRIES, NAME_POOL_SIZE, entity_names, get_graph, name_pool
from rao_jax.envs.chained_research.questions import DIFFICULTIES, PRESETS, SPLITS, Task
from rao_jax.envs.chained_research.renaming import EntityRenaming


NAME_TOKENS = ("words", "names")


@dataclasses.dataclass(frozen=True)
class ChainedResearchConfig:
  """The corpus and questions, what the tools return, and how the experts write their turns.

  Attributes:
    dataset: a `questions.PRESETS` name (graph, pages, questions; the tfds builder config).
    result_style: "full" (search results as {url, title, content, score}) or "compact" ("title: snippet").
    transcript_style: "spec" (thoughts, pages read) or "compact" (`solvers.TRANSCRIPT_STYLES`).
    expert_max_results: results per search of the compact expert (1..10).
    name_tokens: "words": `whole_words()` holds the name pool's words, so "Tham Puver" is three pieces
      ("Tham", " ", "Puver") and copying its second word means looking two pieces back past a bare
      space; renamed copies permute the words. "names": it holds every entity name of the preset's
      graphs whole, so copying a name is copying one piece (TextCraft's items); renamed copies draw
      whole names (`renaming.EntityRenaming`).
  """

  dataset: str = "tiny"
  result_style: str = "full"
  transcript_style: str = "spec"
  expert_max_results: int = 2
  name_tokens: str = "words"

  def __post_init__(self):
    checks = (("dataset", self.dataset in PRESETS, f"is not one of {sorted(PRESETS)}"),
              ("result_style", self.result_style in RESULT_STYLES, f"is not one of {RESULT_STYLES}"),
              ("transcript_style", self.transcript_style in solvers.TRANSCRIPT_STYLES,
               f"is not one of {solvers.TRANSCRIPT_STYLES}"),
              ("expert_max_results", type(self.expert_max_results) is int and 1 <= self.expert_max_results <= 10,
               "must be an int in [1, 10]"),
              ("name_tokens", self.name_tokens in NAME_TOKENS, f"is not one of {NAME_TOKENS}"))
    for field, ok, problem in checks:
      if not ok:
        raise FieldError(field, getattr(self, field), problem)
    if (self.transcript_style == "compact") != (self.result_style == "compact"):
      raise FieldError("transcript_style", self.transcript_style,
                       f"must be 'compact' iff result_style is 'compact' (got result_style={self.result_style!r}): "
                       "the compact expert prints search results whole, the spec expert reads their fields")


class ChainedResearchSuite(Suite):
  """Chained multi-hop research over a fictional encyclopedia (`../shared/spec/STANDINS.md`)."""

  Config = ChainedResearchConfig
  difficulties = DIFFICULTIES
  splits = SPLITS
  env_name = "chained_research"

  @property
  def env_config(self) -> dict[str, Any]:
    return {"dataset": self.config.dataset, "result_style": self.config.result_style}

  def load_tasks(self, split: str, data_dir: str) -> list[Task]:
    return dataset.load_tasks(self.config.dataset, split, data_dir)

  def demonstrations(self, task: Task, *, delegate: bool, max_depth: int, variant: str | None = None
                     ) -> list[DemoNode] | None:
    nodes = self._solve(task, delegate, max_depth)
    if nodes is None or variant is None:
      return nodes
    graph_config = PRESETS[self.config.dataset].corpus.graph
    whole_names = entity_names(graph_config, SPLITS) if self.config.name_tokens == "names" else None
    return renamed_nodes(nodes, EntityRenaming(get_graph(graph_config, task.split), variant, whole_names))

  @functools.lru_cache(maxsize=4096)
  def _solve(self, task: Task, delegate: bool, max_depth: int) -> list[DemoNode] | None:
    config = solvers.SolverConfig(delegate=delegate, max_depth=max_depth, style=self.config.transcript_style,
                                  max_results=self.config.expert_max_results)
    return solvers.solve(self.root_environment(task), config)

  def whole_words(self) -> tuple[str, ...]:
    """The names (`name_tokens`), every country, and every closed-class word a question or a name is
    made of (professions, genres, fields, kinds of organisation, event and award, the words of works'
    titles, months): a description such as "the poet born in 1851" is then copied word for word, not
    piece by piece. Names: with "words" every word of the name pool (train, val and renamed names are
    made of them); with "names" every entity name of the preset's graphs (renamed copies draw from
    them). On a `coarse_numbers` graph also every number its pages and renamed copies can show
    (`graph.number_words()`): a year or length is then copied as one token, not digit by digit."""
    if self.config.name_tokens == "names":
      by_kind = entity_names(PRESETS[self.config.dataset].corpus.graph, SPLITS)
      names = tuple(name for kind in graph.KINDS for name in by_kind[kind])
    else:
      names = name_pool(NAME_POOL_SIZE)
    closed_class = (graph.PROFESSIONS + graph.GENRES + graph.FIELDS + graph.ORGANISATION_KINDS
                    + graph.EVENT_KINDS + graph.AWARD_KINDS + graph.WORK_ADJECTIVES + graph.WORK_NOUNS
                    + graph.MONTHS)
    coarse = PRESETS[self.config.dataset].corpus.graph.coarse_numbers
    numbers = graph.number_words() if coarse else ()
    return tuple(dict.fromkeys(names + COUNTRIES + closed_class + numbers))
