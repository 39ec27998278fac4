"""User-facing errors: the CLI prints them as one line and exits with their ``exit_code`` (2 unless said)."""


class UserError(Exception):
    """A problem with the user's input or environment that the user can fix."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """An invalid configuration value (raised from dataclass ``__post_init__``)."""


class CannotCompare(UserError):
    """Runs that cannot be compared (different models, misaligned steps, no tables of the kind asked for)."""


class StorageError(UserError):
    """A file could not be written or read back (disk full, permissions, a damaged file); names the file."""

    exit_code = 1


class RunStopped(UserError):
    """A training run ended early (diverged, interrupted, failed); its rows so far are kept on disk."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunDiverged(RunStopped):
    """A run that ended as diverged (its manifest says so); exit code 3."""


class Diverged(RunStopped):
    """The loss, the gradient norm or the parameters became non-finite at ``step``."""

    def __init__(self, step: int, epoch: int, what: str) -> None:
        self.step, self.epoch, self.what = step, epoch, what
        super().__init__(f"training diverged at step {step} (epoch {epoch}): the {what} is not finite", exit_code=3)


class Terminated(KeyboardInterrupt):
    """SIGTERM (torchrun, SLURM, docker stop) turned into an interrupt, so it takes SIGINT's path."""
