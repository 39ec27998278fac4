"""The explicit training loop, its hook points, checkpoints and run sessions."""
