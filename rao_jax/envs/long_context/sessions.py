"""The session simulator of the long-context suite: a seeded tabletop campaign and its event log.

A campaign is a cast (players mapped to characters) and `num_episodes` episodes of transcript. Each
episode opens with a marker line `=== Episode i ===`; every other line is either one *event* or filler:

    Roll(character, roll_type, natural, modifier)         total = natural + modifier
    SpellCast(character, spell, base_level, cast_level)   an upcast iff cast_level > base_level

Events are verbalised with varied templates, spoken by the player, the character or the DM, and most
lines are table chatter and narration that also name characters, roll types and spells, so counting
needs reading a line, not matching one word. Two rules keep every question answerable from the text
alone: a natural 1 or 20 is always said as such ("natural 20"), and an upcast always states its level
(a cast without a level is at the spell's base level, which the rules list).

The hidden log is the lines themselves: `Campaign.events_in(text)` finds the events whose whole line
appears, as a line, in any piece of text (a child's chunk), so a delegated sub-goal is graded against
exactly the events its chunk shows. Identical event lines stand for identical observable events.
"""
from __future__ import annotations

import dataclasses
import functools
import random
from typing import Union

from rao_jax.errors import FieldError

CHARACTERS = ("Arlo", "Brisa", "Corin", "Dalia", "Eamon", "Fenna", "Gideon", "Hale", "Isolde", "Joren",
              "Kestrel", "Lyra", "Mirek", "Nessa", "Orrin", "Petra")
PLAYERS = ("Ann", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jan", "Kim", "Lou")
ROLL_TYPES = ("perception", "stealth", "attack", "insight", "athletics", "persuasion", "arcana", "initiative")
# Spell -> base level (0: a cantrip, never upcast). The rules show this table.
SPELLS = {"fireball": 3, "shield": 1, "bless": 1, "hex": 1, "haste": 3, "sleep": 1, "thunderwave": 1,
          "counterspell": 3, "guidance": 0, "frostbite": 0}
MAX_SPELL_LEVEL = 5


def episode_marker(episode: int) -> str:
  """The line that opens episode `episode` (1-based)."""
  return f"=== Episode {episode} ==="


@dataclasses.dataclass(frozen=True)
class Roll:
  character: str
  roll_type: str
  natural: int      # the die, 1..20
  modifier: int

  @property
  def total(self) -> int:
    return self.natural + self.modifier


@dataclasses.dataclass(frozen=True)
class SpellCast:
  character: str
  spell: str
  base_level: int
  cast_level: int

  @property
  def upcast(self) -> bool:
    return self.cast_level > self.base_level


Event = Union[Roll, SpellCast]


@dataclasses.dataclass(frozen=True)
class Line:
  text: str
  event: Event | None
  episode: int


@dataclasses.dataclass(frozen=True)
class SessionConfig:
  """How campaigns are generated.

  Attributes:
    cast_size: characters (and players) per campaign.
    lines_per_episode: transcript lines per episode, its marker included.
    event_rate: the share of lines that are events (the rest is filler).
    spell_share: the share of events that are spell casts (the rest are rolls).
    roll_types: the roll types in play (a prefix of ROLL_TYPES).
    spells: the spells in play (a prefix of SPELLS' keys).
  """

  cast_size: int = 4
  lines_per_episode: int = 285
  event_rate: float = 0.3
  spell_share: float = 0.3
  roll_types: int = 6
  spells: int = 8

  def __post_init__(self):
    checks = (("cast_size", 2 <= self.cast_size <= min(len(CHARACTERS), len(PLAYERS)),
               f"must be in [2, {min(len(CHARACTERS), len(PLAYERS))}]"),
              ("lines_per_episode", self.lines_per_episode >= 2, "must be >= 2"),
              ("event_rate", 0.0 < self.event_rate <= 1.0, "must be in (0, 1]"),
              ("spell_share", 0.0 <= self.spell_share <= 1.0, "must be in [0, 1]"),
              ("roll_types", 2 <= self.roll_types <= len(ROLL_TYPES), f"must be in [2, {len(ROLL_TYPES)}]"),
              ("spells", 2 <= self.spells <= len(SPELLS), f"must be in [2, {len(SPELLS)}]"))
    for field, ok, problem in checks:
      if not ok:
        raise FieldError(field, getattr(self, field), problem)


_ROLL_TEMPLATES = (
    "{c} rolls {t}: {s}.",
    "{p}: {s} for {c}'s {t}.",
    "DM: {c}, roll {t}. {p}: {s}.",
    "{c} gets {s} on {t}.",
)
# Templates that say the natural value (every natural 1 and 20 uses one).
_NATURAL_TEMPLATES = (
    "{c} rolls {t}, natural {n}, {s} total.",
    "{p}: natural {n} on {t} for {c}, {s} total.",
)
_BASE_CAST_TEMPLATES = ("{c} casts {sp}.", "DM: {c}'s {sp} goes off.")
_LEVEL_CAST_TEMPLATES = ("{c} casts {sp} at level {l}.", "{p}: {c} casts {sp} at level {l}.")
_FILLER = (
    "{c}: I check the door.",
    "{c}: I hope my {t} holds.",
    "DM: The fog thickens.",
    "DM: {c} hears a noise.",
    "{p}: pass the dice.",
    "{p}: I forgot {sp} again.",
    "{c}: Do I know {sp}?",
    "DM: No roll yet, {c}.",
    "{c} laughs at {c2}.",
    "{p}: is {t} a skill?",
    "DM: The guard watches {c}.",
    "{c}: I follow {c2}.",
    "{p}: that {sp} was great.",
    "DM: Night falls on the road.",
    "{c} and {c2} rest.",
)


@dataclasses.dataclass(frozen=True)
class Campaign:
  """A generated campaign: its cast (player, character) and every line, episode markers included."""

  cast: tuple[tuple[str, str], ...]
  lines: tuple[Line, ...]
  num_episodes: int

  @property
  def characters(self) -> tuple[str, ...]:
    return tuple(character for _, character in self.cast)

  def character_of(self, player: str) -> str:
    return dict(self.cast)[player]

  @functools.cached_property
  def text(self) -> str:
    return "\n".join(line.text for line in self.lines)

  @functools.cached_property
  def _event_of_text(self) -> dict[str, Event]:
    return {line.text: line.event for line in self.lines if line.event is not None}

  def events(self, last_episode: int | None = None) -> list[Event]:
    """Every event in order (up to the end of `last_episode` if given)."""
    return [line.event for line in self.lines
            if line.event is not None and (last_episode is None or line.episode <= last_episode)]

  def events_in(self, text: str) -> list[Event]:
    """The events whose whole line is a line of `text`, in the order `text` shows them."""
    table = self._event_of_text
    return [table[line] for line in text.split("\n") if line in table]

  def cast_text(self) -> str:
    return ", ".join(f"{player} plays {character}" for player, character in self.cast)


def _roll_line(rng: random.Random, roll: Roll, player: str) -> str:
  natural = roll.natural in (1, 20) or rng.random() < 0.25
  template = rng.choice(_NATURAL_TEMPLATES if natural else _ROLL_TEMPLATES)
  return template.format(c=roll.character, p=player, t=roll.roll_type, n=roll.natural, s=roll.total)


def _cast_line(rng: random.Random, cast: SpellCast, player: str) -> str:
  say_level = cast.upcast or rng.random() < 0.3
  template = rng.choice(_LEVEL_CAST_TEMPLATES if say_level else _BASE_CAST_TEMPLATES)
  return template.format(c=cast.character, p=player, sp=cast.spell, l=cast.cast_level)


def generate_campaign(config: SessionConfig, seed: int | str, num_episodes: int) -> Campaign:
  """A campaign of `num_episodes` episodes, a pure function of (config, seed, num_episodes)'s seed.

  Episode i of a campaign is the same whatever `num_episodes` is: longer inputs extend shorter ones.
  """
  if num_episodes < 1:
    raise ValueError(f"num_episodes={num_episodes} must be >= 1")
  rng = random.Random(f"long_context/cast/{seed}")
  characters = rng.sample(CHARACTERS, config.cast_size)
  players = rng.sample(PLAYERS, config.cast_size)
  cast = tuple(zip(players, characters))
  player_of = {character: player for player, character in cast}
  roll_types = ROLL_TYPES[:config.roll_types]
  spells = list(SPELLS)[:config.spells]
  # Each character favours some roll types and knows a few spells, so counts differ between them.
  weights = {c: [rng.uniform(0.2, 1.0) for _ in roll_types] for c in characters}
  known = {c: rng.sample(spells, min(len(spells), 3)) for c in characters}
  lines: list[Line] = []
  for episode in range(1, num_episodes + 1):
    rng = random.Random(f"long_context/episode/{seed}/{episode}")
    lines.append(Line(episode_marker(episode), None, episode))
    for _ in range(config.lines_per_episode - 1):
      character = rng.choice(characters)
      if rng.random() < config.event_rate:
        if rng.random() < config.spell_share:
          spell = rng.choice(known[character])
          base = SPELLS[spell]
          level = base if base == 0 or rng.random() < 0.7 else rng.randint(base + 1, MAX_SPELL_LEVEL)
          event: Event = SpellCast(character, spell, base, level)
          text = _cast_line(rng, event, player_of[character])
        else:
          roll_type = rng.choices(roll_types, weights[character])[0]
          event = Roll(character, roll_type, rng.randint(1, 20), rng.randint(-1, 6))
          text = _roll_line(rng, event, player_of[character])
        lines.append(Line(text, event, episode))
      else:
        other = rng.choice([c for c in characters if c != character])
        text = rng.choice(_FILLER).format(c=character, c2=other, p=player_of[character],
                                          t=rng.choice(roll_types), sp=rng.choice(spells))
        lines.append(Line(text, None, episode))
  return Campaign(cast=cast, lines=tuple(lines), num_episodes=num_episodes)


@functools.lru_cache(maxsize=64)
def cached_campaign(config: SessionConfig, seed: str, num_episodes: int) -> Campaign:
  """`generate_campaign`, remembered: every tree of a task rebuilds its root from the same campaign."""
  return generate_campaign(config, seed, num_episodes)
