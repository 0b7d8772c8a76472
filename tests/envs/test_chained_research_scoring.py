"""Tests of the chained research scorer: normalised exact match on hand-written cases."""
import pytest

from rao_jax.envs.chained_research.scoring import matches, mentions, normalise


@pytest.mark.parametrize("answer, gold", [
    ("Velmor Press", "Velmor Press"),
    ("velmor press", "Velmor Press"),            # case
    ("Velmor Press.", "Velmor Press"),           # punctuation
    ("  Velmor   Press ", "Velmor Press"),       # whitespace
    ("The Velmor Press", "Velmor Press"),        # articles
    ("Velmor-Press", "Velmor Press"),            # hyphen as space
    ("Velmór Press", "Velmor Press"),            # accents
    ("1,200", "1200"),                           # thousands separators
    ("1200", "1,200 km"[:5]),
    ("1200.0", "1200"),                          # zero fraction
    ("1,240 kilometres", "1,240 km"),            # unit spellings
    ("1240 kilometers", "1,240 km"),
    ("March 12, 1931", "12 March 1931"),         # date forms
    ("1931-03-12", "12 March 1931"),
    ("12th of March 1931", "12 March 1931"),
    ("Mar. 12 1931", "12 March 1931"),
    ("1931-3-12", "12 March 1931"),
])
def test_equal_after_normalisation(answer, gold):
  assert matches(answer, [gold]), (normalise(answer), normalise(gold))


@pytest.mark.parametrize("answer, gold", [
    ("Velmor Pres", "Velmor Press"),
    ("Velmor Press Society", "Velmor Press"),
    ("1201", "1200"),
    ("12 March 1932", "12 March 1931"),
    ("13 March 1931", "12 March 1931"),
    ("1240", "1,240 km"),                        # the unit matters unless an alias drops it
    ("", "Velmor Press"),
    ("the", "The"),                              # nothing left after normalisation matches nothing
])
def test_different_after_normalisation(answer, gold):
  assert not matches(answer, [gold])


def test_aliases_and_answer_types():
  forms = ("1,240 km", "1240")
  assert matches("1240", forms) and matches("1,240", forms) and matches("1240 km", forms)
  assert matches("Republic of Norvania", ("Norvania", "Republic of Norvania"))
  assert matches(1931, ["1931"]) and not matches(1931.0, ["1931"])
  assert not matches(True, ["1"]) and not matches(None, ["None"]) and not matches(["1931"], ["1931"])
  assert not matches("x" * 10**6, ["x"])


def test_mentions_matches_whole_words_only():
  assert mentions("Pinar Nebor was born in the year 1935.", ["1935"])
  assert not mentions("It was 19350 km long.", ["1935"])
  assert mentions("held on March 12, 1931 in Dask", ["12 March 1931"])
