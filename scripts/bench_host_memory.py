"""Train steps with glibc's default malloc against RAO_JAX_HOST_MALLOC=retain (`rao_jax.host_memory`).

    python scripts/bench_host_memory.py                       # tiny 8x512 and small 4x512 rows
    python scripts/bench_host_memory.py --shapes tiny:4x256   # any PRESET:ROWSxT

Each shape runs twice, in fresh child processes (the malloc settings hold for a whole process and only
take effect before JAX's first computation): once with RAO_JAX_HOST_MALLOC=system (the baseline and the
default: what any JAX program gets) and once with retain. Both children time the same steps with
`bench_train.time_case`. The table gives, per step: the median time, the minor page faults and the
kernel (system) CPU time, and the retained run's ratios against the baseline of the same shape.
Each child also measures the float32 matmul peak; the floor (FLOPs / peak, `rao_jax.roofline`) uses the
best peak of the run, so every row's fraction of the floor is against the same number.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import bench_train

from rao_jax import host_memory, roofline

_RESULT_PREFIX = "RESULT "


def _worker(shape: str, steps: int) -> None:
  """Runs in a child process: times one shape and prints its result as one JSON line."""
  retained = host_memory.retain_freed_host_memory()
  case = bench_train.parse_shape(shape)
  result = bench_train.time_case(case, steps)
  machine = roofline.measure_machine(matmul_size=1024)
  print(_RESULT_PREFIX + json.dumps(dict(
      retained=retained, step_s=result["step_s"], page_faults=result["page_faults_per_step"],
      system_s=result["system_s_per_step"], tokens_per_s=result["tokens_per_s"],
      flops=result["cost"].flops, peak_flops=machine.matmul_peak)))


def _run_child(shape: str, steps: int, choice: str) -> dict:
  env = dict(os.environ, **{host_memory.ENV_VAR: choice})
  out = subprocess.run([sys.executable, __file__, "--worker", shape, "--steps", str(steps)], env=env,
                       capture_output=True, text=True, check=False)
  lines = [line for line in out.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
  if out.returncode != 0 or not lines:
    raise RuntimeError(f"child {shape} ({choice}) failed:\n{out.stderr[-3000:]}")
  result = json.loads(lines[-1][len(_RESULT_PREFIX):])
  if result["retained"] != (choice == "retain"):
    raise RuntimeError(f"child {shape} ({choice}) did not apply the requested malloc policy")
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shapes", nargs="+", default=["tiny:8x512", "small:4x512"], metavar="PRESET:ROWSxT")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per child (after one warm-up)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args.worker, args.steps)
    return
  for shape in args.shapes:  # fail on a bad shape before any child starts
    try:
      bench_train.parse_shape(shape)
    except ValueError as error:
      parser.error(str(error))
  print(f"host cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; baseline = "
        f"{host_memory.ENV_VAR}=system (glibc's default malloc) for the same shape\n")
  results = {shape: (_run_child(shape, args.steps, "system"), _run_child(shape, args.steps, "retain"))
             for shape in args.shapes}
  # The peak is the best the machine did in this run: each child measures it after its steps, and on a
  # shared machine single measurements swing by a third.
  peak = max(r["peak_flops"] for pair in results.values() for r in pair)
  print(f"matmul peak: the best float32 [1024]^2 matmul of the run's children, {peak / 1e9:.0f} GFLOP/s\n")
  print("| shape | malloc | step ms | page faults / step | kernel s / step | tokens/s | GFLOP/s | floor ms "
        "| fraction of floor | step time vs baseline | faults vs baseline |")
  print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for shape, (baseline, retained) in results.items():
    for choice, r in (("system", baseline), ("retain", retained)):
      floor_s = r["flops"] / peak
      print(f"| {shape} | {choice} | {r['step_s'] * 1e3:,.0f} | {r['page_faults']:,.0f} | "
            f"{r['system_s']:.3f} | {r['tokens_per_s']:,.0f} | {r['flops'] / r['step_s'] / 1e9:.0f} | "
            f"{floor_s * 1e3:,.0f} | {floor_s / r['step_s']:.2f} | {r['step_s'] / baseline['step_s']:.2f} | "
            f"{r['page_faults'] / max(baseline['page_faults'], 1):.3f} |")


if __name__ == "__main__":
  main()
