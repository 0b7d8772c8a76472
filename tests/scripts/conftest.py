"""Fixtures of the script tests: load a `scripts/*.py` file as a module (scripts are not a package)."""
import importlib.util
import pathlib
import sys

import pytest

SCRIPTS = pathlib.Path(__file__).parents[2] / "scripts"


@pytest.fixture(scope="session")
def load_script():
  """`load_script(name)`: the module of `scripts/{name}.py`, registered in `sys.modules` under `name`
  (a script's dataclasses look their module up there)."""
  def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
  return load
