"""Tests of the chained research knowledge graph, its pages and the BM25 search over them."""
import dataclasses
import re

import pytest

from rao_jax.envs.chained_research import facts, pages as pages_lib
from rao_jax.envs.chained_research.graph import (
    ATTRIBUTES, RELATIONS, GraphConfig, generate_graph, get_graph, name_pool, number_words)
from rao_jax.envs.chained_research.renaming import EntityRenaming
from rao_jax.envs.chained_research.questions import CorpusConfig
from rao_jax.envs.chained_research.search import get_index

CONFIG = GraphConfig()


def _facts(graph):
  return {name: (e.kind, e.attributes, e.relations, e.twin) for name, e in graph.entities.items()}


def test_graph_is_deterministic_from_its_seed_and_split():
  assert _facts(generate_graph(CONFIG, "train")) == _facts(generate_graph(CONFIG, "train"))
  assert _facts(generate_graph(CONFIG, "train")) != _facts(generate_graph(CONFIG, "val"))
  assert _facts(generate_graph(CONFIG, "train")) != _facts(generate_graph(dataclasses.replace(CONFIG, seed=1), "train"))
  assert get_graph(CONFIG, "train") is get_graph(CONFIG, "train")  # cached


def test_entities_are_complete_and_relations_well_typed():
  graph = get_graph(CONFIG, "train")
  assert len(graph.entities) >= sum(CONFIG.counts().values())
  for entity in graph.entities.values():
    assert [a for a, _ in entity.attributes] == list(ATTRIBUTES[entity.kind])
    assert [r for r, _ in entity.relations] == [r for r, _ in RELATIONS[entity.kind]]
    for (relation, target), (_, kind) in zip(entity.relations, RELATIONS[entity.kind]):
      assert graph.entities[target].kind == kind and target != entity.name


def test_near_duplicates_share_a_name_word_and_most_attributes():
  graph = get_graph(CONFIG, "train")
  twins = [e for e in graph.entities.values() if e.twin is not None]
  assert len(twins) >= 0.15 * len(graph.entities)
  for entity in twins:
    twin = graph.entities[entity.twin]
    assert twin.twin == entity.name and twin.kind == entity.kind
    assert set(entity.name.split()) & set(twin.name.split())
    assert sum(a != b for a, b in zip(entity.attributes, twin.attributes)) == 1


def test_coarse_numbers_stay_on_their_grid_in_every_split_and_renamed_copy():
  """With `coarse_numbers` every number a page or a renamed copy of it shows is one of `number_words()`
  (so a tokenizer can hold each as one piece), lengths are multiples of 10 km, and twins still differ."""
  coarse = GraphConfig(coarse_numbers=True)
  words = set(number_words())
  assert len(words) == len(number_words())
  for split in ("train", "val", "rl"):
    graph = get_graph(coarse, split)
    for entity in graph.entities.values():
      values = dict(entity.attributes)
      if "length_km" in values:
        assert values["length_km"] % 10 == 0
      if entity.twin is not None:
        assert values != dict(graph.entities[entity.twin].attributes)
    texts = [page.text for page in pages_lib.render_pages(graph, 1, "object_last")]
    for seed in ("1/0", "2/3", "7/1", "9/2"):
      renaming = EntityRenaming(graph, seed)
      assert renaming.length_shift % 10 == 0
      for text in texts[::7]:
        for number in re.findall(r"\d[\d,]*\d", text + renaming(text)):
          assert number in words, number
  # The default keeps the wide ranges: cities founded before 1800, lengths off the grid.
  wide = get_graph(CONFIG, "train")
  assert any(dict(e.attributes).get("founded", 2000) < 1750 for e in wide.entities.values())
  assert any(dict(e.attributes).get("length_km", 0) % 10 for e in wide.entities.values())


def test_names_are_made_of_pool_words():
  pool = set(name_pool(480))
  assert len(pool) == 480
  for graph in (get_graph(CONFIG, "train"), get_graph(CONFIG, "val")):
    assert set(graph.name_words()) <= pool and graph.name_words()


def test_pages_state_every_fact_and_are_deterministic():
  graph = get_graph(CONFIG, "train")
  pages = pages_lib.render_pages(graph, 2)
  assert pages == tuple(pages_lib.render_page(graph, e, 2) for e in graph.entities.values())
  assert len({p.url for p in pages}) == len(pages)
  for page, entity in zip(pages, graph.entities.values()):
    assert page.url == f"wiki/{entity.slug}" and page.title == entity.name
    for _, target in entity.relations:
      assert target in page.text
    assert len(page.sentences) == len(entity.attributes) + len(entity.relations) + 2


def test_object_last_pages_end_every_fact_with_its_object():
  graph = get_graph(CONFIG, "val")
  for name, fact in {**facts.RELATION_FACTS, **facts.ATTRIBUTE_FACTS}.items():
    assert facts.object_last_sentence(name, fact).endswith("{o}.") and "{s}" in facts.object_last_sentence(name, fact)
  varied = pages_lib.render_pages(graph, 1)
  pages = pages_lib.render_pages(graph, 1, "object_last")
  assert pages != varied and [p.url for p in pages] == [p.url for p in varied]
  for page, entity in zip(pages, graph.entities.values()):
    objects = [target for _, target in entity.relations] + [
        facts.shown_value(a, v) for a, v in entity.attributes]
    fact_sentences = page.sentences[:len(objects)]
    ending = [max((o for o in objects if s.endswith(f" {o}.")), key=len, default=None) for s in fact_sentences]
    assert sorted(objects) == sorted(ending), page.sentences  # each sentence ends with its own object
    assert all(entity.name in s for s in fact_sentences)
  with pytest.raises(ValueError, match="sentences"):
    pages_lib.render_page(graph, next(iter(graph.entities.values())), 1, "terse")
  with pytest.raises(ValueError, match="sentences"):
    CorpusConfig(sentences="terse")


def test_search_ranks_by_bm25_and_is_cached():
  index = get_index(CONFIG, "train", 1)
  assert index is get_index(CONFIG, "train", 1)
  entity = next(e for e in get_graph(CONFIG, "train").entities.values() if e.kind == "person")
  hits = index.search(f"In which city was {entity.name} born?", 5, 200)
  assert hits[0].page.title == entity.name and entity.relation("born_in") in hits[0].snippet
  assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
  assert index.search("the of and", 5, 200) == [] and index.search("zzzqqq", 5, 200) == []
  assert len(index.search("river", 3, 200)) == 3
  assert all(len(h.snippet) <= 40 for h in index.search("river city born", 5, 40))


@pytest.mark.parametrize("bad", [dict(people=1), dict(works=61), dict(countries=9),
                                 dict(near_duplicate_fraction=1.5)])
def test_graph_config_is_checked(bad):
  with pytest.raises(ValueError):
    GraphConfig(**bad)
