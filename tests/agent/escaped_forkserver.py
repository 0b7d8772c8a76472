"""A fork server whose nodes run cells as plain Python with the real builtins: a complete escape from
the language layer, staged on purpose. Tests pass `forkserver_module="escaped_forkserver"` to the pool
to check that the
process boundary alone keeps scores, limits and other nodes out of a cell's reach. Test use only."""
import ast
import builtins
import sys

from rao_jax.agent.interpreter import cell
from rao_jax.agent.interpreter import forkserver
from rao_jax.agent.interpreter import restrictions

_build_namespace = cell.NodeRuntime._build_namespace


def _unrestricted_compile(code: str):
  return compile(code, restrictions.CELL_FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                 dont_inherit=True)


def _namespace_with_real_builtins(self):
  namespace = _build_namespace(self)
  real = dict(vars(builtins))
  real["print"] = namespace["__builtins__"]["print"]  # printed text still comes back as output
  namespace["__builtins__"] = real
  return namespace


restrictions.compile_cell = _unrestricted_compile
cell.NodeRuntime._build_namespace = _namespace_with_real_builtins
forkserver._WARM_UP_CELLS = ("x = 1",)  # the sandbox's own warm-up cells assume its stand-ins

if __name__ == "__main__":
  sys.exit(forkserver.main(sys.argv))
