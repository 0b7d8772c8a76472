"""A run killed (SIGKILL) while an async Orbax save is in flight loses at most that save: the next run
restores the last complete checkpoint, whole, and can save over the interrupted step."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from rao_jax.train.checkpoint import Checkpoints, Progress, RunIdentity

IDENTITY = RunIdentity(model_config={"hidden_size": 8}, tokenizer_fingerprint="k" * 64)
_SIZE = 1 << 23  # 32 MiB of float32 per state: the second save is still being written when the kill lands

_CHILD = textwrap.dedent(f"""
    import os, signal, sys
    import jax, jax.numpy as jnp, numpy as np
    from rao_jax.train.checkpoint import Checkpoints, Progress, RunIdentity
    checkpoints = Checkpoints(sys.argv[1], RunIdentity(model_config={{"hidden_size": 8}},
                                                       tokenizer_fingerprint="k" * 64))
    def save(step):
      checkpoints.save({{"w": jnp.full(({_SIZE},), float(step))}},
                       Progress(step=step, data_position=step, rng_key_data=np.zeros(2, np.uint32)))
    save(1)
    checkpoints.wait()
    save(2)  # returns at once; the write goes on in the background
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _progress(step):
  return Progress(step=step, data_position=step, rng_key_data=np.zeros(2, np.uint32))


def test_a_kill_during_an_async_save_leaves_the_last_complete_checkpoint(tmp_path):
  directory = str(tmp_path / "checkpoints")
  child = subprocess.run([sys.executable, "-c", _CHILD, directory], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert child.returncode == -9, child.stderr
  checkpoints = Checkpoints(directory, IDENTITY)
  latest = checkpoints.latest_step()
  assert latest in (1, 2)  # 2 only if its write had already been committed when the kill landed
  abstract = {"w": jax.ShapeDtypeStruct((_SIZE,), jnp.float32)}
  state, progress = checkpoints.restore(abstract)
  assert progress.step == latest
  np.testing.assert_array_equal(np.asarray(state["w"][::4096]), float(latest))
  # The rerun saves the next step over whatever the killed save left behind, and restores it.
  checkpoints.save({"w": jnp.full((_SIZE,), 3.0)}, _progress(latest + 1))
  checkpoints.close()
  reopened = Checkpoints(directory, IDENTITY)
  assert reopened.latest_step() == latest + 1
  state, _ = reopened.restore(abstract)
  np.testing.assert_array_equal(np.asarray(state["w"][::4096]), 3.0)
  reopened.close()
