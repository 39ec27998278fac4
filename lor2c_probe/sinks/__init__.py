"""Sinks: a recorded run written into the tools researchers already use (TensorBoard so far)."""
