"""Training: packing node sequences into rows, the sharded train step, and the supervised warm start."""
