"""HTML figure reports built from recorded runs (no torch)."""
