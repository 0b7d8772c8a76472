"""The flat expert's cells replayed through the sandboxed interpreter pool print what they printed in
process: the tools' results cross the sandbox boundary intact, and the root finishes with success 1."""
import pytest

from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool
from rao_jax.envs.chained_research import env as env_lib, solvers
from rao_jax.envs.chained_research.questions import build_splits


@pytest.mark.e2e
@pytest.mark.parametrize("style, result_style", [("compact", "compact"), ("spec", "full")])
def test_flat_expert_replays_through_the_sandbox(style, result_style):
  env_config = {"dataset": "tiny", "result_style": result_style}
  tasks = [t for t in build_splits("tiny")["val"] if t.difficulty == "2hop"][:2]
  with InterpreterPool(InterpreterConfig(cell_time_limit_s=5.0)) as pool:
    for root_id, task in enumerate(tasks):
      nodes = solvers.solve(env_lib.make_root_environment(env_config, task.to_dict()),
                            solvers.SolverConfig(style=style))
      pool.create_roots([(root_id, "chained_research", env_config, task.to_dict())], max_depth=4, delegation=False)
      for turn in nodes[0].turns:
        [result] = pool.run_cells([(root_id, turn.code)])
        if turn.output is None:
          assert result.status is CellStatus.FINISHED and result.success == 1.0, result
        else:
          assert result.text.strip() == turn.output.strip(), (result.text, turn.output)
      pool.release([root_id])
