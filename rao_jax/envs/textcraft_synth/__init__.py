"""TextCraft-Synth: a procedural crafting world with recipe chains up to twelve tiers deep.

`world` generates items and recipes, `tasks` samples crafting tasks and their train/val splits,
`dataset` stores the splits as a tfds dataset (array_record), `stats` summarises a setting.
"""
