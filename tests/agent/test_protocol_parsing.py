"""parse_completion: well-formed turns, and malformed completions that must never raise."""
import hypothesis
import hypothesis.strategies as st
import pytest

from rao_jax.agent import parsing, turn_format


def test_well_formed_turn():
  text = turn_format.render_assistant_turn("Check first.", "inv = view_inventory()\nprint(inv)")
  turn = parsing.parse_completion(text)
  assert turn == parsing.ParsedTurn(thought="Check first.", code="inv = view_inventory()\nprint(inv)",
                                    error=None, truncated=False, num_cells=1)


def test_missing_close_tag_runs_what_follows_the_open_tag():
  turn = parsing.parse_completion("<thought>go</thought>\n<python>\nfor i in range(3):\n    print(i)")
  assert turn.code == "for i in range(3):\n    print(i)"
  assert turn.truncated and turn.error is None and turn.thought == "go"


def test_missing_thought_and_text_outside_tags():
  turn = parsing.parse_completion("Sure! Here is code:\n<python>print(1)</python> trailing words")
  assert (turn.thought, turn.code, turn.error) == (None, "print(1)", None)


def test_unclosed_thought_runs_up_to_the_cell():
  turn = parsing.parse_completion("<thought>plan a b\n<python>x = 1</python>")
  assert turn.thought == "plan a b" and turn.code == "x = 1"


def test_thought_after_the_cell_is_not_the_turns_thought():
  turn = parsing.parse_completion("<python>x = 1</python><thought>late</thought>")
  assert turn.thought is None


def test_common_indentation_and_blank_lines_are_removed():
  turn = parsing.parse_completion("<python>\n\n    if x:\n        y = 1\n\n</python>")
  assert turn.code == "if x:\n    y = 1"


def test_first_of_several_cells_runs_and_the_rest_are_counted():
  turn = parsing.parse_completion("<python>a = 1</python>\n<python>b = 2</python><python>c</python>")
  assert (turn.code, turn.error, turn.num_cells) == ("a = 1", None, 3)


def test_nested_open_tag_is_part_of_the_cell():
  turn = parsing.parse_completion("<python>a<python>b</python>c</python>")
  assert turn.code == "a<python>b" and turn.num_cells == 1


@pytest.mark.parametrize("text", ["", "   ", "just words", "<thought>only a thought</thought>",
                                  "</python>", "<pyth", "python>print(1)</python>"])
def test_no_cell_is_an_error_observation(text):
  turn = parsing.parse_completion(text)
  assert turn.code is None and turn.error == parsing.NO_CELL_ERROR
  assert turn_format.CODE_OPEN in turn.error


@pytest.mark.parametrize("text", ["<python></python>", "<python>\n  \n</python>", "<python>"])
def test_empty_cell_is_an_error_observation(text):
  turn = parsing.parse_completion(text)
  assert turn.code is None and turn.error == parsing.EMPTY_CELL_ERROR


def test_huge_and_non_ascii_completions():
  code = "print('ünïcödé 日本語 🎉')\n" * 20_000
  turn = parsing.parse_completion("<thought>" + "é" * 100_000 + "</thought><python>" + code + "</python>")
  assert turn.code == code.rstrip() and len(turn.thought) == 100_000


_FRAGMENTS = st.sampled_from(["<thought>", "</thought>", "<python>", "</python>", "\n", "    ", "x = 1",
                              "日本", "<", ">", "/", "python"])


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=5)), max_size=20))
def test_any_completion_parses_to_code_xor_error(pieces):
  turn = parsing.parse_completion("".join(pieces))
  assert (turn.code is None) != (turn.error is None)
  if turn.code is not None:
    assert turn.code.strip() and "</python>" not in turn.code
