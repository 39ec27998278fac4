"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem with the user's input or environment that the user can fix."""


class ConfigError(UserError, ValueError):
    """An invalid configuration value (raised from dataclass ``__post_init__``)."""
