"""The long-context suite: generator, question families, scoring rules, environment, experts, tfds."""
import dataclasses
import math
import random

import pytest

from rao_jax.envs.long_context import dataset, questions, scoring, sessions, solvers, stats, tasks
from rao_jax.envs.long_context.env import LongContextNode, make_root_environment
from rao_jax.envs.long_context.suite import LongContextSuite, LongContextSuiteConfig

TINY = dataset.builder_config("tiny")
SESSION = TINY.session


def _campaign(seed="t", episodes=2, **session):
  return sessions.generate_campaign(dataclasses.replace(SESSION, **session), seed, episodes)


@pytest.fixture(scope="module")
def val_tasks():
  return tasks.build_split(SESSION, TINY.tasks, "val")


@pytest.fixture(scope="module")
def suite():
  return LongContextSuite(LongContextSuiteConfig())


# ------------------------------------------------------------------------------------ generator


def test_generation_is_deterministic_and_seeded():
  assert _campaign("a").text == _campaign("a").text
  assert _campaign("a").text != _campaign("b").text
  assert tasks.build_split(SESSION, TINY.tasks, "val") == tasks.build_split(SESSION, TINY.tasks, "val")


def test_longer_inputs_extend_shorter_ones():
  one, three = _campaign("x", 1), _campaign("x", 3)
  assert three.text.startswith(one.text + "\n")
  assert three.cast == one.cast
  assert [line.text for line in three.lines if line.event is None and line.text.startswith("===")] == [
      sessions.episode_marker(i) for i in (1, 2, 3)]


def test_every_event_is_readable_from_its_line():
  campaign = _campaign("r", 3)
  for line in campaign.lines:
    event = line.event
    if isinstance(event, sessions.Roll):
      assert event.character in line.text and event.roll_type in line.text and str(event.total) in line.text
      assert (f"natural {event.natural}" in line.text) or event.natural not in (1, 20)
    elif isinstance(event, sessions.SpellCast):
      assert event.character in line.text and event.spell in line.text
      assert (f"level {event.cast_level}" in line.text) or not event.upcast
  assert sum(line.event is not None for line in campaign.lines) < len(campaign.lines) / 2  # mostly filler


def test_events_in_counts_only_whole_lines():
  campaign = _campaign("e", 1)
  assert campaign.events_in(campaign.text) == campaign.events()
  lines = campaign.text.split("\n")
  first_event = next(i for i, line in enumerate(campaign.lines) if line.event is not None)
  assert campaign.events_in(lines[first_event]) == [campaign.lines[first_event].event]
  assert campaign.events_in(lines[first_event][:-3]) == []          # a line cut by a chunk boundary
  assert campaign.events_in("\n".join(lines[:first_event])) == []
  assert campaign.events_in("") == []


@pytest.mark.parametrize("field, value", [("cast_size", 1), ("lines_per_episode", 1), ("event_rate", 0.0),
                                          ("spell_share", 1.5), ("roll_types", 99), ("spells", 1)])
def test_bad_session_configs_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    dataclasses.replace(SESSION, **{field: value})


def test_tiny_buckets_are_at_least_six_windows_per_episode(tmp_path, val_tasks, suite):
  """Sizes in tokens of a tokenizer trained the way the trainer trains the tiny preset's."""
  from rao_jax.agent.episode import EpisodeFormat
  from rao_jax.train import warm_start
  fmt = EpisodeFormat(delegation=True, max_depth=1, max_steps_per_node=4, context_window=416,
                      prompt_style="minimal")
  config = warm_start.TokenizerConfig(vocab_size=1536, corpus_examples=200, transcript_tasks=8, whole_words=True)
  tokenizer = warm_start.build_tokenizer(str(tmp_path), config, suite, val_tasks[:8], fmt)
  for task in val_tasks[::7]:
    text = suite.root_environment(task).context
    assert len(tokenizer.encode(text)) >= 6 * 416 * task.num_episodes, task.seed


# ------------------------------------------------------------------------------------ scoring


@pytest.mark.parametrize("gold, message, expected", [
    ("12", r"\boxed{12}", 1.0),
    ("12", r"I think \boxed{10}", 0.75 ** 2),
    ("12", r"\boxed{3} no wait \boxed{12}", 1.0),               # the last box counts
    ("12", "12", 0.0),                                           # no box
    ("12", r"\boxed{twelve}", 0.0),                              # int vs str
    ("stealth", r"\boxed{ Stealth }", 1.0),                      # case-insensitive
    ("stealth", r"\boxed{stealthy}", 0.0),
    ("hex, bless, haste", r"\boxed{bless, HEX}", 2 / 3),         # |gold ∩ pred| / |gold|
    ("hex, bless", r"\boxed{hex, bless, sleep, shield}", 1.0),   # extra items cost nothing
    ("hex, bless", r"\boxed{hex}", 0.0),                         # list vs str
    ("1,200", r"\boxed{1200}", 0.0),                             # a comma makes a list, as in the original
    ("7", r"\boxed{\text{7}}", 0.0),
    ("-2", r"\boxed{-2}", 1.0),
    ("5", r"\boxed{5", 0.0),                                     # unclosed
])
def test_root_scoring_follows_the_original_rules(gold, message, expected):
  assert scoring.score_answer(gold, message) == pytest.approx(expected)


@pytest.mark.parametrize("message", [None, 12, ["\\boxed{12}"], {"a": 1}, 1.5, True, "\\boxed{}" * 10_000])
def test_root_scoring_never_raises(message):
  assert 0.0 <= scoring.score_answer("12", message) <= 1.0


def test_last_boxed_handles_nested_braces():
  assert scoring.last_boxed(r"\boxed{a{b}c} and \boxed{{x}}") == "{x}"
  assert scoring.last_boxed("none") is None


@pytest.mark.parametrize("gold, value, expected", [
    (3, 3, 1.0), (3, 5, 0.75 ** 2), (3, "3", 1.0), (3, "\\boxed{3}", 1.0), (3, True, 0.0), (3, 3.0, 0.0),
    (3, [3], 0.0), (["hex", "bless"], ["Hex"], 0.5), (["hex"], "hex", 1.0), ([], [], 1.0), ([], ["hex"], 0.0),
    ({"stealth": 2, "attack": 1}, {"stealth": 2, "attack": 1}, 1.0),
    ({"stealth": 2, "attack": 1}, {"stealth": 2}, 0.5),
    ({"stealth": 2}, {"stealth": 2, "arcana": 1}, 0.5),
    ({"stealth": 2}, {"stealth": "2"}, 0.0),
    ({}, {}, 1.0),
])
def test_sub_goal_values_are_scored_by_type(gold, value, expected):
  assert scoring.score_value(gold, value) == pytest.approx(expected)
  assert scoring.sub_goal_success(gold, value) == float(expected == 1.0)


# ------------------------------------------------------------------------------------ questions


def test_every_sub_goal_text_parses_back():
  goals = [questions.SubGoal("count_rolls"), questions.SubGoal("count_rolls", character="Arlo"),
           questions.SubGoal("count_rolls", roll_type="stealth"), questions.SubGoal("count_natural", value=20),
           questions.SubGoal("count_spells"), questions.SubGoal("count_spells", character="Lyra"),
           questions.SubGoal("count_upcasts"), questions.SubGoal("list_spells", character="Hale"),
           questions.SubGoal("roll_type_counts")]
  assert {g.kind for g in goals} == set(questions.SUB_GOAL_KINDS)
  for goal in goals:
    assert questions.SubGoal.parse(goal.text()) == goal
    assert questions.SubGoal.parse("  " + goal.text().replace(" ", "  ") + " ") == goal  # spacing is free


@pytest.mark.parametrize("family", questions.FAMILIES)
def test_a_count_question_that_holds_for_any_chunk_is_its_own_sub_goal(family):
  _, campaign, question = _question(family, 2)
  parsed = questions.SubGoal.parse(question.text())
  if question.chunk_question():
    assert parsed == question.sub_goal(campaign)
  else:  # a player, an episode, a list or a type ranking: only its canonical sub-goal is gradable
    assert parsed is None


@pytest.mark.parametrize("family", questions.FAMILIES)
def test_the_expert_root_hands_on_its_question_only_when_it_holds_for_any_chunk(family):
  seed, campaign, question = _question(family, 2)
  task = tasks.Task(seed, "episodes_2", question, questions.gold_text(question, campaign))
  root = make_root_environment({"session": dataclasses.asdict(WIDE)}, task.to_dict())
  assert root.namespace_variables()["question"] == question.text()
  [(_, code)] = solvers.root_cells(root, solvers.SolverConfig(delegate=True))
  handed_on = "launch_subagent(question, context=c)" in code
  assert handed_on == question.chunk_question()
  child = root.fork(question.text() if handed_on else question.sub_goal(campaign).text(), "a line")
  assert child.namespace_variables() == {"context": "a line", "question": child.goal}
  assert child.sub_goal == question.sub_goal(campaign)


@pytest.mark.parametrize("text", ["", "Count the rolls.", "count the rolls in context.", "Count the rolls in context",
                                  "Count the rolls by Arlo and Lyra in context.", "List the spells in context."])
def test_other_goals_are_not_sub_goals(text):
  assert questions.SubGoal.parse(text) is None


WIDE = dataclasses.replace(SESSION, cast_size=5, roll_types=8, spells=10)


def _question(family, episodes):
  """(seed, campaign of `episodes` episodes with WIDE settings, a well-posed question of `family` about it)."""
  for attempt in range(20):
    seed = f"fam/{family}/{attempt}"
    campaign = sessions.generate_campaign(WIDE, seed, episodes)
    try:
      question = questions.sample_question(random.Random(seed), campaign, (family,), sessions.ROLL_TYPES)
    except ValueError:
      continue
    return seed, campaign, question
  raise AssertionError(f"no campaign has a well-posed {family} question")


@pytest.mark.parametrize("family", questions.FAMILIES)
def test_gold_answers_aggregate_over_any_chunking(family):
  """The decomposition the recursive expert relies on: any split into line chunks gives the gold."""
  rng = random.Random(family)
  _, campaign, question = _question(family, 3)
  lines = question.relevant_text(campaign).split("\n")
  for _ in range(5):
    size = rng.randint(1, 60)
    chunks = ["\n".join(lines[i:i + size]) for i in range(0, len(lines), size)]
    sub_goal = question.sub_goal(campaign)
    parts = [sub_goal.answer(campaign.events_in(chunk)) for chunk in chunks]
    assert question.aggregate(parts) == question.gold(campaign)


def test_questions_round_trip_and_reject_unknown_families():
  question = questions.Question("cumulative_rolls", character="Arlo", episode=2)
  assert questions.Question.from_dict(question.to_dict()) == question
  with pytest.raises(ValueError, match="family"):
    questions.Question.from_dict({"family": "nope"})


@pytest.mark.parametrize("family", ["most_common_roll_type", "least_common_roll_type"])
def test_ties_are_never_asked(family):
  asked = 0
  for seed in range(30):
    campaign = _campaign(f"tie{seed}", 1)
    try:
      question = questions.sample_question(random.Random(seed), campaign, (family,),
                                           sessions.ROLL_TYPES[:SESSION.roll_types])
    except ValueError:  # this campaign ties: the family is not asked of it
      continue
    asked += 1
    counts = sorted(question.sub_goal(campaign).answer(campaign.events()).values(),
                    reverse=family.startswith("most"))
    assert counts[0] != counts[1]
  assert asked >= 10


# ------------------------------------------------------------------------------------ environment


def _root(task):
  return make_root_environment({"session": dataclasses.asdict(SESSION)}, task.to_dict())


def test_root_holds_the_transcript_in_context_not_in_the_prompt(val_tasks):
  root = _root(val_tasks[0])
  assert root.namespace_variables() == {"context": root.campaign.text, "question": root.question.text()}
  parts = root.prompt_parts(True)
  assert root.campaign.text[:200] not in " ".join((parts.rules, parts.goal, parts.tool_docs))
  assert root.campaign.cast_text() in parts.goal and root.question.text() in parts.goal
  assert parts.delegation_rules and not root.prompt_parts(False).delegation_rules


BAD_LAUNCHES = [
    ((), {}), ((None,), {}), ((3,), {}), ((True,), {}), (("",), {}), (("   ",), {}), (("x" * 5000,), {}),
    ((["Count the rolls in context."],), {}), ((b"Count",), {}),
    (("Count the rolls in context.",), {"context": 5}), (("Count the rolls in context.",), {"context": ["a", "b"]}),
    (("Count the rolls in context.",), {"context": None}), (("Count the rolls in context.",), {"context": b"x"}),
    (("Count the rolls in context.",), {"context": "x" * 10_000_000}),
    (("Count the rolls in context.", "chunk", "extra"), {}),
    (("Count the rolls in context.",), {"chunk": "x"}), (("Count the rolls in context.",), {"max_depth": 3}),
]


@pytest.mark.parametrize("args, kwargs", BAD_LAUNCHES)
def test_bad_launches_return_clear_errors(val_tasks, args, kwargs):
  child = _root(val_tasks[0]).fork(*args, **kwargs)
  assert isinstance(child, str) and child.startswith("Error: launch_subagent")


def test_children_get_their_chunk_and_are_graded_on_it(val_tasks):
  root = _root(val_tasks[0])
  chunk = "\n".join(root.context.split("\n")[:40])
  child = root.fork("Count the rolls in context.", context=chunk)
  assert isinstance(child, LongContextNode) and child.namespace_variables() == {"context": chunk, "question": child.goal}
  assert root.fork("Count the rolls in context.", chunk).context == chunk  # positional too
  truth = sum(isinstance(e, sessions.Roll) for e in root.campaign.events_in(chunk))
  assert child.judge(truth) == 1.0 and child.judge(truth + 1) == 0.0  # exact: no partial credit
  assert child.judge(str(truth)) == 1.0
  ungradable = root.fork("Tell me about the rolls.", context=chunk)
  assert ungradable.judge(truth) == 0.0
  assert root.fork("Count the rolls in context.").judge(0) == 1.0  # no context: no events


@pytest.mark.parametrize("value", [None, True, 1.5, math.nan, "", [], {}, [[[]]], {"a": {"b": 1}}, "x" * 100_000,
                                   10**100, -(10**100), ["\\boxed{1}"]])
def test_judges_never_raise(val_tasks, value):
  root = _root(val_tasks[0])
  for node in (root, root.fork("Count the rolls in context.", context=root.context),
               root.fork("List the spells cast by Arlo in context, in order.", context=root.context),
               root.fork("Count the rolls of each type in context.", context=root.context)):
    assert 0.0 <= node.judge(value) <= 1.0


@pytest.mark.parametrize("bad", [{}, {"session": {}, "x": 1}, {"session": {"cast_size": 99}}])
def test_bad_env_configs_fail_loudly(val_tasks, bad):
  with pytest.raises((ValueError, TypeError)):
    make_root_environment(bad, val_tasks[0].to_dict())


@pytest.mark.parametrize("missing", ["seed", "question", "answer"])
def test_bad_tasks_fail_loudly(val_tasks, missing):
  task = val_tasks[0].to_dict()
  del task[missing]
  with pytest.raises(ValueError, match=missing):
    make_root_environment({"session": dataclasses.asdict(SESSION)}, task)


# ------------------------------------------------------------------------------------ experts


def test_the_recursive_expert_solves_every_tiny_val_task(val_tasks, suite):
  for task in val_tasks:
    solution = suite.solve(task, True)
    assert solution.success == 1.0, (task, solution.finish_value)
    root, children = solution.nodes[0], solution.nodes[1:]
    assert len(root.turns) == 1 and "asyncio.gather" in root.turns[0].code
    assert len(children) == math.ceil(len(root.environment.context.split("\n")) / suite.config.chunk_lines)
    assert all(node.depth == 1 and node.environment.judge(_finish(node)) == 1.0 for node in children)


def _finish(node):
  code = node.turns[-1].code
  assert code.startswith("finish(")
  return eval(code[len("finish("):-1])  # the expert's own literal


@pytest.mark.parametrize("family", questions.FAMILIES)
def test_the_recursive_expert_solves_every_family_with_json_child_results(family):
  seed, campaign, question = _question(family, 2)
  task = tasks.Task(seed, "episodes_2", question, questions.gold_text(question, campaign))
  root = make_root_environment({"session": dataclasses.asdict(WIDE)}, task.to_dict())
  solution = solvers.solve(root, solvers.SolverConfig(delegate=True, chunk_lines=25))
  assert solution.success == 1.0, (question, solution.finish_value, task.answer)


def test_the_flat_expert_answers_from_what_it_read_and_mostly_fails(val_tasks, suite):
  scores = []
  for task in val_tasks:
    solution = suite.solve(task, False)
    [node] = solution.nodes
    read = node.turns[0].output
    assert read == "\n".join(node.environment.context.split("\n")[:suite.config.chunk_lines])
    question = node.environment.question
    seen = question.aggregate([question.sub_goal(node.environment.campaign).answer(
        node.environment.campaign.events_in(read))])
    assert scoring.last_boxed(solution.finish_value) == scoring.format_answer(seen)
    scores.append(solution.success)
  assert sum(scores) / len(scores) < 0.3


def test_renamed_copies_rename_the_cast_consistently(val_tasks, suite):
  from rao_jax.envs.long_context.renaming import CastRenaming
  rename = CastRenaming("7/1")
  assert sorted(rename.mapping[c] for c in sessions.CHARACTERS) == sorted(sessions.CHARACTERS)
  assert sorted(rename.mapping[p] for p in sessions.PLAYERS) == sorted(sessions.PLAYERS)
  assert CastRenaming("7/1").mapping == rename.mapping != CastRenaming("7/2").mapping
  assert rename("Loud Hales and Annex") == "Loud Hales and Annex"  # whole words only
  task = next(t for t in val_tasks if t.question.family == "rolls_by_character")
  original = suite.demonstrations(task, delegate=True, max_depth=1)
  copy = suite.demonstrations(task, delegate=True, max_depth=1, variant="7/1")
  character = task.question.character
  assert "launch_subagent(question, context=c)" in copy[0].turns[0].code and rename(character) in copy[0].goal
  assert {node.goal for node in copy[1:]} == {f"How many rolls did {rename(character)} make?"}
  for before, after in zip(original, copy):
    assert after.goal == rename(before.goal)
    assert after.depth == 0 or questions.SubGoal.parse(after.goal) is not None
    assert [t.output for t in after.turns] == [None if t.output is None else rename(t.output) for t in before.turns]
    assert [t.thought for t in after.turns] == [rename(t.thought) for t in before.turns]


def test_the_flat_expert_states_its_sub_goal_first(val_tasks, suite):
  for task in val_tasks[:10]:
    [node] = suite.demonstrations(task, delegate=False, max_depth=1)
    sub_goal = questions.SubGoal.parse(node.turns[0].thought)
    assert sub_goal == task.question.sub_goal(node.environment.campaign)


def test_demonstrations_follow_the_delegate_flag(val_tasks, suite):
  assert len(suite.demonstrations(val_tasks[0], delegate=False, max_depth=1)) == 1
  assert len(suite.demonstrations(val_tasks[0], delegate=True, max_depth=0)) == 1
  assert len(suite.demonstrations(val_tasks[0], delegate=True, max_depth=1)) > 6


# ------------------------------------------------------------------------------------ data


def test_tfds_round_trip(tmp_path):
  mini = dataset.builder_config("mini")
  assert mini.session == SESSION  # the tiny setting, fewer tasks
  loaded = dataset.load_tasks("mini", "val", str(tmp_path))
  assert loaded == tasks.build_split(SESSION, mini.tasks, "val")
  assert [t.difficulty for t in loaded[::4]] == list(tasks.DIFFICULTIES)
  assert dataset.load_tasks("mini", "train", str(tmp_path)) == tasks.build_split(SESSION, mini.tasks, "train")
  with pytest.raises(ValueError, match="split"):
    dataset.load_tasks("mini", "test", str(tmp_path))
  with pytest.raises(ValueError, match="config"):
    dataset.load_tasks("huge", "val", str(tmp_path))


def test_splits_share_no_campaign():
  train = tasks.build_split(SESSION, dataclasses.replace(TINY.tasks, train_per_difficulty=40), "train")
  val = tasks.build_split(SESSION, TINY.tasks, "val")
  assert not {t.seed for t in train} & {t.seed for t in val}
  texts = {sessions.cached_campaign(SESSION, t.seed, 1).text for t in train}
  assert not texts & {sessions.cached_campaign(SESSION, t.seed, 1).text for t in val}


def test_stats_cli(capsys):
  result = stats.main(["--config", "tiny", "--split", "val"])
  assert "val" in result and "train" not in result
  entry = result["val"]["episodes_2"]
  assert entry["tasks"] == 30 and entry["lines"]["min"] == 2 * SESSION.lines_per_episode
  assert set(entry["families"]) <= set(dataset.TINY_FAMILIES)
  assert '"episodes_3"' in capsys.readouterr().out


@pytest.mark.parametrize("field, value", [("dataset", "huge"), ("chunk_lines", 0)])
def test_bad_suite_configs_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    LongContextSuiteConfig(**{field: value})


# ------------------------------------------------------------------------------------ the sandbox


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["rolls_total", "spell_list", "most_common_roll_type"])
def test_the_recursive_expert_replays_through_the_sandbox(family):
  """The expert's cells run in the real interpreter pool: `context` reaches every node's namespace,
  `launch_subagent(goal, context=chunk)` spawns one child per chunk in one gather, children's ints,
  lists and dicts come back through the boundary, and the root finishes with the gold answer."""
  from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool
  seed, campaign, question = _question(family, 1)
  task = tasks.Task(seed, "episodes_1", question, questions.gold_text(question, campaign))
  env_config = {"session": dataclasses.asdict(WIDE)}
  solution = solvers.solve(make_root_environment(env_config, task.to_dict()), solvers.SolverConfig(chunk_lines=40))
  root, children = solution.nodes[0], solution.nodes[1:]
  with InterpreterPool(InterpreterConfig(cell_time_limit_s=5.0)) as pool:
    pool.create_roots([(0, "long_context", env_config, task.to_dict())], max_depth=1, delegation=True)
    [suspended] = pool.run_cells([(0, root.turns[0].code)])
    assert suspended.status is CellStatus.SUSPENDED and len(suspended.spawns) == len(children) > 1
    values = {}
    for spawn, child in zip(suspended.spawns, children):
      assert spawn.prompt.goal == child.goal
      [read] = pool.run_cells([(spawn.child_id, child.turns[0].code)])
      assert read.text.strip() == child.turns[0].output.strip()  # the chunk, printed in the sandbox
      [finished] = pool.run_cells([(spawn.child_id, child.turns[1].code)])
      assert finished.status is CellStatus.FINISHED and finished.success == 1.0, finished
      values[spawn.child_id] = finished.finish_value
    assert {type(v) for v in values.values()} == {dict if family.startswith("most") else
                                                   list if family == "spell_list" else int}
    [result] = pool.resume([(0, values)])
    assert result.status is CellStatus.FINISHED and result.success == 1.0, result
    assert result.finish_value == f"\\boxed{{{task.answer}}}"
    pool.release([0, *values])
