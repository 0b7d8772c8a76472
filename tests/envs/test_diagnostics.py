"""The diagnostic environments of the RL-learns tests: who succeeds, and bad input as error strings."""
import pytest

from rao_jax.envs import diagnostics, registry


def test_choice_succeeds_only_with_the_hidden_answer():
  node = registry.make_root_environment(diagnostics.CHOICE, {}, {"answer": "red"})
  assert node.judge("red") == 1.0 and node.judge("blue") == 0.0 and node.judge(None) == 0.0
  assert "red" not in node.prompt_parts(True).goal  # the answer is found by reward, not read
  assert node.fork("red").startswith("Error")


def test_relay_root_succeeds_through_its_childs_work_alone():
  root = registry.make_root_environment(diagnostics.RELAY, {}, {"answer": "red"})
  assert root.tools() == {}  # the root cannot write
  wrong, right = root.fork("blue"), root.fork("red")
  assert right.prompt_parts(False).goal == "Write red."
  assert root.judge("done") == 0.0  # nothing written yet
  wrong.tools()["write"]()
  assert wrong.judge("done") == 1.0 and root.judge("done") == 0.0
  right.tools()["write"]()
  assert right.judge("done") == 1.0 and root.judge("done") == 1.0 and root.judge("") == 0.0
  assert wrong.judge("done") == 0.0  # the board no longer shows its word


@pytest.mark.parametrize("args, kwargs", [(("purple",), {}), ((), {}), (("red", "blue"), {}), ((3,), {}),
                                          (("red",), {"context": "x"})])
def test_bad_launches_are_error_strings(args, kwargs):
  root = registry.make_root_environment(diagnostics.RELAY, {}, {"answer": "red"})
  assert root.fork(*args, **kwargs).startswith("Error")
  assert root.fork("red").fork("red").startswith("Error: only the root")


@pytest.mark.parametrize("task", [{}, {"answer": "purple"}, {"answer": "red", "x": 1}, ["red"]])
def test_bad_tasks_raise(task):
  with pytest.raises(ValueError, match="diagnostic task"):
    registry.make_root_environment(diagnostics.CHOICE, {}, task)
  with pytest.raises(ValueError, match="env_config"):
    registry.make_root_environment(diagnostics.RELAY, {"world": "toy"}, {"answer": "red"})
