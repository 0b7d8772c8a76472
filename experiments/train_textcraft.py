"""Trains on TextCraft-Synth: `experiments/train.py` under the name the paper's commands use.

  python experiments/train_textcraft.py --config configs/textcraft.py:tiny
"""
import os
import runpy

if __name__ == "__main__":
  runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py"), run_name="__main__")
