"""Command implementations: turn parsed options into configs and call the library."""
