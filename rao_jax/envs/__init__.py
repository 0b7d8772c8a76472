"""Environments for recursive agents (TextCraft-Synth first)."""
