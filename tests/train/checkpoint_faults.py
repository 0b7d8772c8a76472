"""Fault injection for checkpoint tests: damage written checkpoints the way bit rot would."""
import os


def flip_a_bit_in_the_array_data(step_directory: str, mask: int = 0x08) -> None:
  """Flips one bit (`mask`) in the middle of the largest file of the state item (its array chunks)."""
  files = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(step_directory, "state"))
           for name in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.seek(os.path.getsize(largest) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ mask]))
