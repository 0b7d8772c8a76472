"""The end-of-run report and scripts/plot_figures.py, on work directories written the way the trainer writes them."""
import importlib.util
import json
import os
import re

import pytest

from rao_jax.train import report

_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "plot_figures.py")
TIERS = ("easy", "medium", "hard", "extreme")


def _eval(step, solved):
  record = {"step": step, "kind": "eval", "success": sum(solved) / 120, "delegation_rate": 0.1 * step,
            "parallel_fraction": 0.2 * step, "critical_path_tokens": 40.0 + step, "total_tokens_per_tree": 90.0}
  for tier, count in zip(TIERS, solved):
    record.update({f"success/{tier}": count / 30, f"solved/{tier}": float(count), f"tasks/{tier}": 30.0,
                   f"max_depth/{tier}": float(TIERS.index(tier) * 3 + 1),
                   f"max_depth_solved/{tier}": float(TIERS.index(tier) * 3)})
  return record


def _tree(depth, difficulty, success=1.0):
  nodes = [{"id": d, "depth": d, "parent": d - 1, "success": success} for d in range(depth + 1)]
  return {"tree": 0, "group": 0, "difficulty": difficulty, "nodes": nodes}


def _workdir(path, solved_before, solved_after, train_depth=3):
  os.makedirs(path / "trees")
  records = [_eval(0, solved_before)]
  records += [{"step": s, "kind": "train", "rollout/delegation_rate": 0.2 * s, "rollout/max_depth": 12,
               "rollout/max_depth_solved": train_depth}
              for s in range(4)]
  records.append(_eval(4, solved_after))
  (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  for step, depth in ((0, 2), (2, train_depth)):
    (path / "trees" / f"train_step{step:06d}.jsonl").write_text(json.dumps(_tree(depth, "medium")) + "\n")
  (path / "trees" / "eval_val_step000004.jsonl").write_text(
      "".join(json.dumps(_tree(d, t, s)) + "\n" for d, t, s in ((7, "hard", 1.0), (8, "hard", 1.0), (1, "easy", 1.0),
                                                                (12, "hard", 0.0))))
  return str(path)


def test_report_counts_per_tier_and_the_change(tmp_path):
  workdir = _workdir(tmp_path / "run", (25, 3, 0, 0), (29, 27, 21, 12))
  text = report.report(workdir, "val")
  assert "warm start (step 0)" in text and "after RL (step 4)" in text
  assert re.search(r"^hard +0 / 30 +0% +21 / 30 +70% +\+70 pts$", text, re.MULTILINE), text
  assert "mean" in text and "+51 pts" in text  # (13.3 + 80 + 70 + 40) / 4, rounded
  assert f"python -m rao_jax.viz --trees {workdir}/trees/eval_val_step000004.jsonl" in text
  assert report.depth_summary(report.read_records(os.path.join(workdir, "metrics.jsonl"))) == (
      "solved held-out hard trees reach depth 6 (final evaluation); solved training trees reached at most depth 3")
  assert report.report(str(tmp_path), "val").startswith("no evaluation")


def _plot_main():
  spec = importlib.util.spec_from_file_location("plot_figures", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.main


def test_figures_regenerate_from_the_two_work_directories(tmp_path, capsys):
  rao = _workdir(tmp_path / "rao", (25, 3, 0, 0), (29, 27, 21, 12))
  linear = _workdir(tmp_path / "linear", (25, 3, 0, 0), (27, 4, 0, 0), train_depth=0)
  assert _plot_main()(["--workdir", rao, "--baseline", linear, "--out", str(tmp_path / "figures"),
                       "--parallel_runs", f"{rao},{linear}"]) == 0
  written = capsys.readouterr().out.split()
  assert [os.path.basename(p) for p in written] == ["success_per_tier.png", "depth_distribution.png",
                                                      "delegation_rate.png", "parallelism.png"]
  for path in written:
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_depth_figure_counts_solved_trees_only(tmp_path):
  workdir = _workdir(tmp_path / "rao", (25, 3, 0, 0), (29, 27, 21, 12))
  spec = importlib.util.spec_from_file_location("plot_figures", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  path = os.path.join(workdir, "trees", "eval_val_step000004.jsonl")
  assert module._solved_tree_depths(path, "hard") == [7, 8]  # the failed depth-12 chain is left out
  assert module._solved_tree_depths(path) == [7, 8, 1]


def test_figures_need_evaluations(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no evaluations"):
    _plot_main()(["--workdir", str(tmp_path / "empty")])


def _nan_workdir(path):
  """A run whose final evaluation had a NaN success on the hard tier (a misbehaving judge), logged the
  way the trainer logs it (as null), and whose trees file holds a root with a NaN success."""
  from rao_jax.train.metrics_log import MetricsLog
  workdir = _workdir(path, (25, 3, 0, 0), (29, 27, 21, 12))
  records = report.read_records(os.path.join(workdir, "metrics.jsonl"))
  os.remove(os.path.join(workdir, "metrics.jsonl"))
  last = dict(records[-1])
  last.update({"success": float("nan"), "success/hard": float("nan"), "solved/hard": float("nan")})
  with MetricsLog(workdir, tensorboard=False) as log:
    for record in records[:-1] + [last]:
      log.write(record["step"], record["kind"], {k: v for k, v in record.items() if k not in ("step", "kind")})
  assert report.eval_records(workdir)[-1]["solved/hard"] is None  # what the table has to read
  nan_tree = _tree(9, "hard", None)  # Trees.to_jsonl writes a NaN success as null
  with open(os.path.join(workdir, "trees", "eval_val_step000004.jsonl"), "a", encoding="utf-8") as f:
    f.write(json.dumps(nan_tree) + "\n")
  return workdir


def test_report_prints_a_nan_evaluation_as_not_available(tmp_path):
  workdir = _nan_workdir(tmp_path / "run")
  text = report.report(workdir, "val")
  assert re.search(r"^hard +0 / 30 +0% +n/a / 30 +n/a +n/a$", text, re.MULTILINE), text
  assert re.search(r"^easy +25 / 30 +83% +29 / 30 +97% +\+13 pts$", text, re.MULTILINE), text
  assert re.search(r"^mean +n/a$", text, re.MULTILINE), text  # a mean over some tiers would mislead
  assert report.depth_summary(report.read_records(os.path.join(workdir, "metrics.jsonl"))) == (
      "solved held-out hard trees reach depth 6 (final evaluation); solved training trees reached at most depth 3")


def test_figures_regenerate_from_a_run_with_a_nan_evaluation(tmp_path, capsys):
  workdir = _nan_workdir(tmp_path / "rao")
  assert _plot_main()(["--workdir", workdir, "--out", str(tmp_path / "figures")]) == 0
  assert len(capsys.readouterr().out.split()) == 4
  spec = importlib.util.spec_from_file_location("plot_figures", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  path = os.path.join(workdir, "trees", "eval_val_step000004.jsonl")
  assert module._solved_tree_depths(path, "hard") == [7, 8]  # the NaN root (depth 9) is no solve


def _compare_module():
  path = os.path.join(os.path.dirname(_SCRIPT), "compare_evals.py")
  spec = importlib.util.spec_from_file_location("compare_evals", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _scores_file(path, scores):
  path.write_text("".join(json.dumps({"tree": i, "group": i, "difficulty": tier,
                                      "nodes": [{"id": 0, "parent": -1, "depth": 0, "success": s}]}) + "\n"
                          for i, (tier, s) in enumerate(scores)))
  return str(path)


def test_compare_evals_pairs_tasks_and_reports_an_interval(tmp_path, capsys):
  module = _compare_module()
  before = _scores_file(tmp_path / "a.jsonl", [("x", 0.0)] * 20 + [("y", 0.5)] * 10)
  after = _scores_file(tmp_path / "b.jsonl", [("x", 1.0)] * 15 + [("x", 0.0)] * 5 + [("y", 0.5)] * 10)
  result = module.compare(before, after)
  assert result["x"]["diff"] == pytest.approx(0.75) and result["x"]["low"] > 0 and result["x"]["p"] < 0.001
  assert result["y"]["diff"] == 0 and result["y"]["p"] == 1.0
  assert result["all"]["n"] == 30
  assert module.main(["--before", before, "--after", after]) == 0
  assert "| x | 20 | 0.000 | 0.750 | +0.750" in capsys.readouterr().out
  shuffled = _scores_file(tmp_path / "c.jsonl", [("y", 0.5)] * 10 + [("x", 0.0)] * 20)
  with pytest.raises(ValueError, match="same tasks"):
    module.compare(before, shuffled)


@pytest.mark.parametrize("problem", ["missing file", "unfinished run", "different tasks", "not json"])
def test_compare_evals_reports_bad_inputs_as_one_line(tmp_path, capsys, problem):
  module = _compare_module()
  good = _scores_file(tmp_path / "a.jsonl", [("x", 0.0)] * 3)
  if problem == "missing file":
    argv = ["--before", good, "--after", str(tmp_path / "none.jsonl")]
  elif problem == "unfinished run":  # one evaluation so far
    (tmp_path / "run" / "trees").mkdir(parents=True)
    _scores_file(tmp_path / "run" / "trees" / "eval_val_step000000.jsonl", [("x", 0.0)])
    argv = ["--workdir", str(tmp_path / "run")]
  elif problem == "different tasks":
    argv = ["--before", good, "--after", _scores_file(tmp_path / "b.jsonl", [("y", 0.0)] * 3)]
  else:
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    argv = ["--before", good, "--after", str(tmp_path / "bad.jsonl")]
  assert module.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "Traceback" not in err
