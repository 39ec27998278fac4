"""Tasks, their sources and their metrics."""
