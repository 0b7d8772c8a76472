"""How facts read: canonical sub-questions, page sentences, question phrases and gold answers.

Every fact (a relation or an attribute of an entity) has

- one *canonical sub-question* about a named entity ("In which city was Arlen Voss born?"): the query
  the expert searches with and the goal it hands a child; a child's goal is graded iff it is one of
  these (or a start question, `start_question`), see `env.py`;
- page sentences (a few templates, picked per entity) that each contain every keyword of that
  sub-question, so a search for it finds the sentence as the snippet of the entity's page;
- a noun phrase that wraps a description of the entity ("the city where {x} was born") to nest the
  hops of a root question.

A relation's sub-question is answered by the target entity's name; an attribute's by its value as
`answer_forms` writes it (the first form is the gold answer, the others are aliases).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from rao_jax.envs.chained_research.graph import MONTHS, Entity


@dataclasses.dataclass(frozen=True)
class Fact:
  """How one relation or attribute reads. `{s}` is the subject's name, `{o}` the object (value or name)."""

  question: str          # canonical sub-question about a named subject
  sentences: tuple[str, ...]
  phrase: str            # wraps a description: "the city where {x} was born" (relations only)


RELATION_FACTS: Mapping[str, Fact] = {
    "born_in": Fact("In which city was {s} born?",
                    ("{s} was born in the city of {o}.", "{s} was born and raised in the city of {o}."),
                    "the city where {x} was born"),
    "member_of": Fact("Which organisation is {s} a member of?",
                      ("{s} is a member of the organisation {o}.",
                       "{s} joined the organisation {o} as a member."),
                      "the organisation that {x} is a member of"),
    "won": Fact("Which award has {s} won?",
                ("{s} has won the award {o}.", "{s} won the award known as {o}."),
                "the award that {x} has won"),
    "founder": Fact("Who was the founder of {s}?",
                    ("The founder of {s} was {o}.", "{s} counts {o} as its founder."),
                    "the founder of {x}"),
    "based_in": Fact("In which city is {s} based?",
                     ("{s} is based in the city of {o}.", "{s} has long been based in the city of {o}."),
                     "the city where {x} is based"),
    "river": Fact("Which river flows through {s}?",
                  ("The river {o} flows through {s}.", "{s} is a city that the river {o} flows through."),
                  "the river that flows through {x}"),
    "source": Fact("Near which city does {s} rise?",
                   ("{s} rises near the city of {o}.", "Near the city of {o}, {s} rises from springs."),
                   "the city near which {x} rises"),
    "creator": Fact("Who created {s}?",
                    ("{s} was created by {o}.", "{o} created {s}."),
                    "the creator of {x}"),
    "held_in": Fact("In which city was {s} held?",
                    ("{s} was held in the city of {o}.", "The city of {o} is where {s} was held."),
                    "the city where {x} was held"),
    "organiser": Fact("Which organisation organised {s}?",
                      ("{s} was organised by the organisation {o}.", "The organisation {o} organised {s}."),
                      "the organisation that organised {x}"),
    "given_by": Fact("Which organisation gives {s}?",
                     ("The organisation {o} gives {s}.", "{s} is an award the organisation {o} gives."),
                     "the organisation that gives {x}"),
}

_PERSON_COUNTRY = Fact("Which country is {s} from?",
                       ("{s} is from the country of {o}.", "{s} comes from the country of {o}."), "")
_PLACE_COUNTRY = Fact("In which country is {s}?",
                      ("{s} is in the country of {o}.", "{s} lies in the country of {o}."), "")
ATTRIBUTE_FACTS: Mapping[str, Fact] = {
    "profession": Fact("What is the profession of {s}?",
                       ("{s} is a {o} by profession.", "By profession, {s} is a {o}."), ""),
    "birth_year": Fact("In what year was {s} born?",
                       ("{s} was born in the year {o}.", "The year {s} was born was {o}."), ""),
    "founded": Fact("In what year was {s} founded?",
                    ("{s} was founded in the year {o}.", "The year {s} was founded was {o}."), ""),
    "length_km": Fact("How long, in km, is {s}?",
                      ("{s} is {o} long.", "{s} runs {o} long from source to mouth."), ""),
    "genre": Fact("What is the genre of {s}?",
                  ("The genre of {s} is {o}.", "{s} belongs to the genre {o}."), ""),
    "year": Fact("In what year was {s} released?",
                 ("{s} was released in the year {o}.", "The year {s} was released was {o}."), ""),
    "date": Fact("On what date was {s} held?",
                 ("{s} was held on the date {o}.", "The date on which {s} was held was {o}."), ""),
    "field": Fact("In which field is {s} given?",
                  ("{s} is given in the field of {o}.", "In the field of {o}, {s} is given."), ""),
    "established": Fact("In what year was {s} established?",
                        ("{s} was established in the year {o}.", "The year {s} was established was {o}."), ""),
}


SENTENCE_STYLES = ("varied", "object_last")
# Object-last sentences for the facts none of whose sentences ends with its object.
_OBJECT_LAST = {
    "river": "{s} is a city on the river {o}.",
    "given_by": "{s} is given by the organisation {o}.",
    "length_km": "The length of {s} is {o}.",
}


def object_last_sentence(name: str, fact: Fact) -> str:
  """The sentence of fact `name` (a relation or attribute) that ends with its object ("... the city of {o}.")."""
  return _OBJECT_LAST.get(name) or next(s for s in fact.sentences if s.endswith("{o}."))


def attribute_fact(entity: Entity, attribute: str) -> Fact:
  if attribute == "country":
    return _PERSON_COUNTRY if entity.kind == "person" else _PLACE_COUNTRY
  return ATTRIBUTE_FACTS[attribute]


def long_date(iso: str) -> str:
  """"1931-03-12" -> "12 March 1931"."""
  year, month, day = (int(part) for part in iso.split("-"))
  return f"{day} {MONTHS[month - 1]} {year}"


def answer_forms(attribute: str, value: str | int) -> tuple[str, ...]:
  """The gold answer of an attribute value, then its aliases (scoring normalises further)."""
  if attribute == "length_km":
    return (f"{value:,} km", str(value))
  if attribute == "date":
    return (long_date(str(value)), str(value))
  if attribute == "country":
    return (str(value), f"Republic of {value}")
  return (str(value),)


def shown_value(attribute: str, value: str | int) -> str:
  """An attribute value as page sentences and descriptions write it."""
  return answer_forms(attribute, value)[0]


# ------------------------------------------------------------------------------ start descriptions


def describe(entity: Entity, attributes: tuple[str, ...]) -> str:
  """A description of `entity` by `attributes` ("the painter from Norvania born in 1921")."""
  chosen = {name: entity.attribute(name) for name in attributes}
  kind = entity.kind
  head = {"person": "person", "work": "work", "award": "award"}.get(kind, kind)
  if kind == "person" and "profession" in chosen:
    head = str(chosen["profession"])
  if kind == "work" and "genre" in chosen:
    head = str(chosen["genre"])
  if kind == "award" and "field" in chosen:
    head = f"{chosen['field']} award"
  parts = [f"the {head}"]
  if "country" in chosen:
    parts.append(f"from {chosen['country']}" if kind in ("person", "organisation") else f"in {chosen['country']}")
  for name, template in (("birth_year", "born in {}"), ("founded", "founded in {}"),
                         ("length_km", "that is {} long"), ("year", "released in {}"),
                         ("date", "held on {}"), ("established", "established in {}")):
    if name in chosen:
      parts.append(template.format(shown_value(name, chosen[name])))
  return " ".join(parts)


def start_question(entity: Entity, attributes: tuple[str, ...]) -> str:
  """The canonical sub-question that resolves a start description to its entity's name."""
  return f"{'Who' if entity.kind == 'person' else 'What'} is {describe(entity, attributes)}?"


def capitalise(text: str) -> str:
  return text[:1].upper() + text[1:]
