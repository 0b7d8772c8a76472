"""Question families of the long-context suite, their gold answers and their decomposition into chunks.

Every question is answered by one *sub-goal* asked of every chunk of the (relevant part of the)
transcript, and an aggregation of the chunks' answers:

    family                     question                                      sub-goal         aggregation
    rolls_by_character         How many rolls did Arlo make?                 count_rolls      sum
    rolls_by_player            How many rolls did Ann's character make?      count_rolls      sum
    rolls_of_type              How many stealth rolls were made?             count_rolls      sum
    rolls_total                How many rolls were made in all?              count_rolls      sum
    natural_value              How many natural 20s were rolled?             count_natural    sum
    spells_by_character        How many spells did Arlo cast?                count_spells     sum
    upcasts                    How many spells were cast above base level?   count_upcasts    sum
    spell_list                 Which spells did Arlo cast?                   list_spells      ordered union
    first_spell / last_spell   What was the first spell Arlo cast?           list_spells      first / last
    most_common_roll_type,     Which roll type was rolled most often?        roll_type_counts summed, argmax
      least_common_roll_type                                                                  / argmin
    cumulative_rolls           How many rolls did Arlo make by the end of    count_rolls on   sum
                               episode 2?                                    episodes 1..i

Sums, ordered unions and summed counts split over any partition of the lines into chunks, so the
gold answer is the aggregation of the sub-goal's answer on the whole (relevant) transcript, and a
recursive agent whose children all answer their chunks exactly answers the question exactly.

Sub-goal texts are canonical sentences (`SubGoal.text`) that `SubGoal.parse` reads back; a child
succeeds iff it answers its sub-goal exactly on the events of its own chunk
(`scoring.sub_goal_success`). A count question that names no player and no episode
(`Question.chunk_question`) is also its own sub-goal: "How many rolls did Arlo make?" asked of a
chunk means "Count the rolls by Arlo in context.", so a root can hand its chunks the question itself.
"""
from __future__ import annotations

import collections
import dataclasses
import random
import re
from typing import Any

from rao_jax.envs.long_context import scoring
from rao_jax.envs.long_context.sessions import Campaign, Event, Roll, SpellCast, episode_marker

SUB_GOAL_KINDS = ("count_rolls", "count_natural", "count_spells", "count_upcasts", "list_spells",
                  "roll_type_counts")
FAMILIES = ("rolls_by_character", "rolls_by_player", "rolls_of_type", "rolls_total", "natural_value",
            "spells_by_character", "upcasts", "spell_list", "first_spell", "last_spell",
            "most_common_roll_type", "least_common_roll_type", "cumulative_rolls")
_SUM_FAMILIES = ("rolls_by_character", "rolls_by_player", "rolls_of_type", "rolls_total", "natural_value",
                 "spells_by_character", "upcasts", "cumulative_rolls")
_NAME = r"([A-Za-z]+)"


@dataclasses.dataclass(frozen=True)
class SubGoal:
  """What a child is asked about its chunk (fields unused by a kind are None)."""

  kind: str
  character: str | None = None
  roll_type: str | None = None
  value: int | None = None

  def text(self) -> str:
    """The canonical sentence of this sub-goal (`parse` reads it back)."""
    if self.kind == "count_rolls":
      kind = f"{self.roll_type} " if self.roll_type else ""
      by = f" by {self.character}" if self.character else ""
      return f"Count the {kind}rolls{by} in context."
    if self.kind == "count_natural":
      return f"Count the natural {self.value} rolls in context."
    if self.kind == "count_spells":
      by = f" by {self.character}" if self.character else ""
      return f"Count the spells cast{by} in context."
    if self.kind == "count_upcasts":
      return "Count the upcast spells in context."
    if self.kind == "list_spells":
      return f"List the spells cast by {self.character} in context, in order."
    if self.kind == "roll_type_counts":
      return "Count the rolls of each type in context."
    raise ValueError(f"unknown sub-goal kind {self.kind!r}")

  @classmethod
  def parse(cls, text: str) -> "SubGoal | None":
    """The sub-goal a goal text states, or None if it is no canonical sub-goal sentence."""
    text = " ".join(text.split())
    patterns = (
        (rf"Count the rolls by {_NAME} in context\.", lambda m: cls("count_rolls", character=m[1])),
        (rf"Count the {_NAME} rolls in context\.", lambda m: cls("count_rolls", roll_type=m[1])),
        (r"Count the rolls in context\.", lambda m: cls("count_rolls")),
        (r"Count the natural (\d{1,2}) rolls in context\.", lambda m: cls("count_natural", value=int(m[1]))),
        (rf"Count the spells cast by {_NAME} in context\.", lambda m: cls("count_spells", character=m[1])),
        (r"Count the spells cast in context\.", lambda m: cls("count_spells")),
        (r"Count the upcast spells in context\.", lambda m: cls("count_upcasts")),
        (rf"List the spells cast by {_NAME} in context, in order\.",
         lambda m: cls("list_spells", character=m[1])),
        (r"Count the rolls of each type in context\.", lambda m: cls("roll_type_counts")),
        # A question that sums over the lines, asked of a chunk as it stands (`Question.chunk_question`).
        (rf"How many rolls did {_NAME} make\?", lambda m: cls("count_rolls", character=m[1])),
        (rf"How many {_NAME} rolls were made\?", lambda m: cls("count_rolls", roll_type=m[1])),
        (r"How many rolls were made in all\?", lambda m: cls("count_rolls")),
        (r"How many natural (\d{1,2})s were rolled\?", lambda m: cls("count_natural", value=int(m[1]))),
        (rf"How many spells did {_NAME} cast\?", lambda m: cls("count_spells", character=m[1])),
        (r"How many spells were cast above their base level\?", lambda m: cls("count_upcasts")),
    )
    for pattern, build in patterns:
      match = re.fullmatch(pattern, text)
      if match:
        return build(match)
    return None

  def matches(self, events: list[Event]) -> list[Event]:
    """The events this sub-goal is about, in order (its answer counts, lists or tallies them)."""
    if self.kind == "count_rolls":
      return [e for e in events if isinstance(e, Roll) and self.character in (None, e.character)
              and self.roll_type in (None, e.roll_type)]
    if self.kind == "count_natural":
      return [e for e in events if isinstance(e, Roll) and e.natural == self.value]
    if self.kind in ("count_spells", "list_spells"):
      return [e for e in events if isinstance(e, SpellCast) and self.character in (None, e.character)]
    if self.kind == "count_upcasts":
      return [e for e in events if isinstance(e, SpellCast) and e.upcast]
    if self.kind == "roll_type_counts":
      return [e for e in events if isinstance(e, Roll)]
    raise ValueError(f"unknown sub-goal kind {self.kind!r}")

  def evidence(self, events: list[Event]) -> str:
    """What a careful reader notes before answering: the matching events, numbered, one word each
    (the word the question does not already fix), e.g. "1 stealth, 2 attack." or "none."."""
    words = []
    for event in self.matches(events):
      if isinstance(event, SpellCast):
        words.append(event.spell)
      elif self.kind == "roll_type_counts" or self.character is not None:
        words.append(event.roll_type)
      else:
        words.append(event.character)
    return ", ".join(f"{i} {word}" for i, word in enumerate(words, start=1)) + "." if words else "none."

  def answer(self, events: list[Event]) -> Any:
    """The exact answer of this sub-goal over `events`: an int, a list of spells or {roll type: count}."""
    matched = self.matches(events)
    if self.kind == "list_spells":
      return [e.spell for e in matched]
    if self.kind == "roll_type_counts":
      return dict(collections.Counter(e.roll_type for e in matched))
    return len(matched)


@dataclasses.dataclass(frozen=True)
class Question:
  """One question about a campaign (parameters unused by a family are None)."""

  family: str
  character: str | None = None
  player: str | None = None
  roll_type: str | None = None
  value: int | None = None
  episode: int | None = None   # cumulative_rolls: up to the end of this episode

  def text(self) -> str:
    family = self.family
    if family == "rolls_by_character":
      return f"How many rolls did {self.character} make?"
    if family == "rolls_by_player":
      return f"How many rolls did {self.player}'s character make?"
    if family == "rolls_of_type":
      return f"How many {self.roll_type} rolls were made?"
    if family == "rolls_total":
      return "How many rolls were made in all?"
    if family == "natural_value":
      return f"How many natural {self.value}s were rolled?"
    if family == "spells_by_character":
      return f"How many spells did {self.character} cast?"
    if family == "upcasts":
      return "How many spells were cast above their base level?"
    if family == "spell_list":
      return f"Which spells did {self.character} cast? List each once, in order of first cast."
    if family in ("first_spell", "last_spell"):
      return f"What was the {family.split('_')[0]} spell {self.character} cast?"
    if family in ("most_common_roll_type", "least_common_roll_type"):
      return f"Which roll type was rolled {family.split('_')[0]} often?"
    if family == "cumulative_rolls":
      return f"How many rolls did {self.character} make by the end of episode {self.episode}?"
    raise ValueError(f"unknown family {family!r}")

  def sub_goal(self, campaign: Campaign) -> SubGoal:
    """What every chunk is asked (a player is resolved to the character the cast gives them)."""
    family = self.family
    if family in ("rolls_by_character", "cumulative_rolls"):
      return SubGoal("count_rolls", character=self.character)
    if family == "rolls_by_player":
      return SubGoal("count_rolls", character=campaign.character_of(self.player))
    if family == "rolls_of_type":
      return SubGoal("count_rolls", roll_type=self.roll_type)
    if family == "rolls_total":
      return SubGoal("count_rolls")
    if family == "natural_value":
      return SubGoal("count_natural", value=self.value)
    if family == "spells_by_character":
      return SubGoal("count_spells", character=self.character)
    if family == "upcasts":
      return SubGoal("count_upcasts")
    if family in ("spell_list", "first_spell", "last_spell"):
      return SubGoal("list_spells", character=self.character)
    if family in ("most_common_roll_type", "least_common_roll_type"):
      return SubGoal("roll_type_counts")
    raise ValueError(f"unknown family {family!r}")

  def chunk_question(self) -> bool:
    """True if this question, asked of any chunk as it stands, is its own sub-goal: a count over
    the lines that names no player and no episode (`SubGoal.parse` reads its text). A root then
    delegates its `question` variable and copies no name into a sub-goal."""
    return self.family in _SUM_FAMILIES and self.family not in ("rolls_by_player", "cumulative_rolls")

  def relevant_text(self, campaign: Campaign) -> str:
    """The part of the transcript the question is about (episodes 1..i for cumulative questions)."""
    if self.family == "cumulative_rolls" and self.episode < campaign.num_episodes:
      return campaign.text.split(episode_marker(self.episode + 1))[0]
    return campaign.text

  def aggregate(self, parts: list[Any]) -> Any:
    """The answer from the sub-goal's answers on consecutive chunks (the expert root's arithmetic)."""
    family = self.family
    if family in _SUM_FAMILIES:
      return sum(parts)
    if family in ("spell_list", "first_spell", "last_spell"):
      spells = [spell for part in parts for spell in part]
      if family == "spell_list":
        return list(dict.fromkeys(spells))
      return (spells[0] if family == "first_spell" else spells[-1]) if spells else ""
    if family in ("most_common_roll_type", "least_common_roll_type"):
      totals: collections.Counter = collections.Counter()
      for part in parts:
        totals.update(part)
      if not totals:
        return ""
      pick = max if family == "most_common_roll_type" else min
      return pick(totals, key=totals.get)
    raise ValueError(f"unknown family {family!r}")

  def gold(self, campaign: Campaign) -> Any:
    """The exact answer over the relevant transcript."""
    events = campaign.events_in(self.relevant_text(campaign))
    return self.aggregate([self.sub_goal(campaign).answer(events)])

  def aggregation_code(self) -> str:
    """The expert root's code that turns `results` (the chunks' answers, in order) into `finish`."""
    family = self.family
    if family in _SUM_FAMILIES:
      return 'finish("\\\\boxed{%d}" % sum(results))'
    if family in ("spell_list", "first_spell", "last_spell"):
      pick = {"spell_list": '", ".join(dict.fromkeys(spells))', "first_spell": "spells[0]",
              "last_spell": "spells[-1]"}[family]
      return f'spells = [s for r in results for s in r]\nfinish("\\\\boxed{{%s}}" % {pick})'
    if family in ("most_common_roll_type", "least_common_roll_type"):
      pick = "max" if family == "most_common_roll_type" else "min"
      return ("totals = {}\nfor r in results:\n    for k, v in r.items():\n"
              "        totals[k] = totals.get(k, 0) + v\n"
              f'finish("\\\\boxed{{%s}}" % {pick}(totals, key=totals.get))')
    raise ValueError(f"unknown family {family!r}")

  def to_dict(self) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> "Question":
    if not isinstance(data, dict) or data.get("family") not in FAMILIES:
      raise ValueError(f"a question is a dict with a family of {FAMILIES}, got {data!r}")
    return cls(**data)


def _well_posed(question: Question, campaign: Campaign) -> bool:
  """False for questions without a clear answer: no spell to name, a tie for most/least common."""
  gold = question.gold(campaign)
  if question.family in ("spell_list", "first_spell", "last_spell"):
    return bool(gold)
  if question.family in ("most_common_roll_type", "least_common_roll_type"):
    counts = question.sub_goal(campaign).answer(campaign.events_in(campaign.text))
    ranked = sorted(counts.values(), reverse=question.family == "most_common_roll_type")
    return len(ranked) >= 2 and ranked[0] != ranked[1]
  return True


def sample_question(rng: random.Random, campaign: Campaign, families: tuple[str, ...],
                    roll_types: tuple[str, ...], max_tries: int = 50) -> Question:
  """A well-posed question of one of `families` about `campaign` (ValueError if none is found)."""
  for _ in range(max_tries):
    family = rng.choice(families)
    if family == "cumulative_rolls" and campaign.num_episodes < 2:
      continue
    player, character = rng.choice(campaign.cast)
    fields = {
        "rolls_by_player": {"player": player},
        "rolls_of_type": {"roll_type": rng.choice(roll_types)},
        "natural_value": {"value": rng.choice((1, 20))},
        "cumulative_rolls": {"character": character,
                             "episode": rng.randint(1, max(1, campaign.num_episodes - 1))},
    }.get(family, {})
    if family in ("rolls_by_character", "spells_by_character", "spell_list", "first_spell", "last_spell"):
      fields = {"character": character}
    question = Question(family, **fields)
    if _well_posed(question, campaign):
      return question
  raise ValueError(f"no well-posed question of {families} in {max_tries} tries")


def gold_text(question: Question, campaign: Campaign) -> str:
  """The gold answer as the text a correct root boxes."""
  return scoring.format_answer(question.gold(campaign))
