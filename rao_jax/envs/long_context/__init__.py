"""The long-context aggregation suite: the offline stand-in for Oolong-Real (docs/long_context.md)."""
