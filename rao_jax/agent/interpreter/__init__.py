"""Sandboxed code interpreter for recursive agents (see docs/sandbox.md).

`InterpreterPool` runs model-written cells in locked-down processes, one per node; each node of an
execution tree has a persistent namespace holding its environment's tools, `finish`, and (with
delegation) the awaitable `launch_subagent`, which the rollout engine resolves through `resume`.
"""
from rao_jax.agent.interpreter.messages import CellStatus
from rao_jax.agent.interpreter.pool import CellResult
from rao_jax.agent.interpreter.pool import InterpreterConfig
from rao_jax.agent.interpreter.pool import InterpreterPool
from rao_jax.agent.interpreter.pool import Spawn

__all__ = ["CellResult", "CellStatus", "InterpreterConfig", "InterpreterPool", "Spawn"]
