"""Whether a node may delegate: the one definition, used by the trainer's side (`episode.EpisodeFormat`:
what a node's prompt offers) and by the interpreter's (`interpreter.messages.TreeLimits`: what its
namespace allows and what its children's prompts offer)."""


def may_delegate(delegation: bool, max_depth: int, depth: int) -> bool:
  """True iff delegation is on and a node at `depth` (root = 0) is above the depth cap `max_depth`.

  A node at the cap sees no delegation section and no `launch_subagent` docs in its prompt, and a
  launch from it (still possible when delegation is on) returns a refusal string.
  """
  return delegation and depth < max_depth


def refusal(depth: int) -> str:
  """What a launch from a node at `depth`, the depth cap, resolves to (an error string, not a child)."""
  return (f"Error: launch_subagent refused: this agent is at depth {depth}, the maximum; it may not "
          "delegate. Do the work directly.")
