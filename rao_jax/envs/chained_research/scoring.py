"""Normalised exact match: the scorer of root answers and of graded sub-goals.

`normalise(text)` applies, in order:

1. Unicode compatibility decomposition, accents dropped, lower case.
2. Dates to ISO: "12 March 1931", "12th of March, 1931", "March 12, 1931", "Mar 12 1931" and "1931-03-12"
   all become "1931-03-12" (English month names or their three-letter abbreviations; day 1-31), which
   step 4 writes "1931 03 12".
3. Numbers: thousands separators dropped ("1,200" -> "1200"), a zero fraction dropped ("1200.0" ->
   "1200"); kilometre spellings become "km".
4. Punctuation becomes space (hyphens and apostrophes too), the articles "a", "an", "the" are
   dropped, and runs of whitespace collapse to one space.

`matches(answer, gold_forms)` is True iff the normalised answer equals one normalised gold form (the gold
value or an alias). Only strings and ints (not bools) are answers; anything else matches nothing.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH = r"(?P<month>" + "|".join(f"{m[:3]}(?:{m[3:]})?" for m in _MONTHS) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{3,4})"
_DATE_PATTERNS = (
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b"),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b"),
    re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b"),
)
_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_ZERO_FRACTION = re.compile(r"\b(\d+)\.0+\b")
_KILOMETRES = re.compile(r"\bkilomet(?:er|re)s?\b")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
MAX_ANSWER_CHARS = 1000


def _month_number(month: str) -> int:
  if month.isdigit():
    return int(month)
  return [m[:3] for m in _MONTHS].index(month[:3]) + 1


def _iso_date(match: re.Match) -> str:
  day, month, year = int(match["day"]), _month_number(match["month"]), int(match["year"])
  if not (1 <= day <= 31 and 1 <= month <= 12):
    return match.group(0)
  return f"{year:04d}-{month:02d}-{day:02d}"


def normalise(text: str) -> str:
  """The normal form of an answer (module docstring)."""
  text = unicodedata.normalize("NFKD", text)
  text = "".join(c for c in text if not unicodedata.combining(c)).lower()
  for pattern in _DATE_PATTERNS:
    text = pattern.sub(_iso_date, text)
  text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
  text = _ZERO_FRACTION.sub(r"\1", text)
  text = _KILOMETRES.sub("km", text)
  text = _PUNCTUATION.sub(" ", text)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def answer_text(answer: object) -> str | None:
  """The text of a finish value that can be an answer (a str, or an int that is not a bool), else None."""
  if type(answer) is str:
    return answer[:MAX_ANSWER_CHARS]
  if type(answer) is int and abs(answer) < 10**18:
    return str(answer)
  return None


def matches(answer: object, gold_forms: Iterable[str]) -> bool:
  """Whether `answer` equals one of `gold_forms` after normalisation (see the module docstring)."""
  text = answer_text(answer)
  if text is None:
    return False
  normal = normalise(text)
  return bool(normal) and any(normal == normalise(form) for form in gold_forms)


def mentions(text: str, gold_forms: Iterable[str]) -> bool:
  """Whether a normalised gold form occurs in normalised `text` as whole words (the single-search test)."""
  padded = f" {normalise(text)} "
  return any(f" {normalise(form)} " in padded for form in gold_forms if normalise(form))
