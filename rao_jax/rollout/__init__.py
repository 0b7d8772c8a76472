"""The recursive rollout engine: device-side decoding of whole delegation frontiers."""
