"""BM25 search over a graph's pages (the `bm25s` package), built once per graph and process.

`SearchIndex.search(query, k)` ranks pages by BM25 (k1 1.5, b 0.75, Lucene's variant) of the query's
terms (`pages.terms`) over page titles and texts; pages scoring 0 (no shared term) are never returned,
and ties keep the graph's page order, so results are deterministic. Terms absent from every page are
ignored.
"""
from __future__ import annotations

import dataclasses
import functools
import logging

import bm25s
import numpy as np

from rao_jax.envs.chained_research import pages as pages_lib
from rao_jax.envs.chained_research.graph import GraphConfig, get_graph

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at INFO


@dataclasses.dataclass(frozen=True)
class Hit:
  """One search result: the page, its snippet for the query, and its BM25 score (3 decimals)."""

  page: pages_lib.Page
  snippet: str
  score: float


class SearchIndex:
  """A BM25 index of `pages`, and the page of each url."""

  def __init__(self, pages: tuple[pages_lib.Page, ...]):
    self.pages = pages
    self.by_url = {page.url: page for page in pages}
    self._sentence_terms = {page.url: [frozenset(pages_lib.terms(s)) for s in page.sentences] for page in pages}
    self._bm25 = bm25s.BM25()
    self._bm25.index([pages_lib.terms(page.text) or ["_"] for page in pages], show_progress=False)
    self._vocabulary = self._bm25.vocab_dict

  def search(self, query: str, k: int, snippet_chars: int) -> list[Hit]:
    """The `k` best pages for `query` (fewer if fewer share a term with it)."""
    query_terms = [t for t in dict.fromkeys(pages_lib.terms(query)) if t in self._vocabulary]
    if not query_terms:
      return []
    scores = np.asarray(self._bm25.get_scores(query_terms), np.float64)
    order = np.argsort(-scores, kind="stable")[:k]
    wanted = frozenset(query_terms)
    return [Hit(page=self.pages[i], snippet=self._snippet(self.pages[i], wanted, snippet_chars),
                score=round(float(scores[i]), 3))
            for i in order if scores[i] > 0]

  def _snippet(self, page: pages_lib.Page, query_terms: frozenset[str], max_chars: int) -> str:
    """The page sentence sharing the most distinct terms with the query (first on a tie), cut to `max_chars`."""
    overlaps = [len(query_terms & sentence) for sentence in self._sentence_terms[page.url]]
    best = page.sentences[int(np.argmax(overlaps))] if overlaps else ""
    return best if len(best) <= max_chars else best[:max(0, max_chars - 3)] + "..."


@functools.lru_cache(maxsize=8)
def get_index(config: GraphConfig, split: str, distractors: int, sentences: str = "varied") -> SearchIndex:
  """The (per-process cached) index of the pages of `config`'s graph for `split`."""
  return SearchIndex(pages_lib.render_pages(get_graph(config, split), distractors, sentences))
