"""Errors that are the user's to fix: they print as one clear message, without a traceback;
and the stop a signal asks for."""

import signal


class CnnexpError(Exception):
    """A problem with the user's config, data or setup; the message says how to fix it."""


class ConfigError(CnnexpError):
    """A config value that cannot work."""


class DataError(CnnexpError):
    """A dataset that is missing, truncated, corrupt or laid out wrongly."""


class ModelError(CnnexpError):
    """A network that does not fit its input."""


class DamagedFileError(CnnexpError):
    """A file we read that is cut short, corrupt or not of the form we write: the message names
    the file, what is wrong with it and what to do."""

    def __init__(self, path: object, reason: str, fix: str):
        self.path, self.reason, self.fix = path, reason, fix
        super().__init__(f"{path} cannot be read ({reason}); {fix}")


class DivergedError(CnnexpError):
    """The training loss became NaN or exploded."""


# A cluster's "your time is nearly up": SLURM's SIGTERM, and the signal a job asks for with
# `--signal` (submitit asks for SIGUSR2).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
STOPPED = 143  # the exit status of a process that SIGTERM stopped (128 + 15), as a shell reports


class StopSignal(KeyboardInterrupt):
    """A stop signal arrived (what SLURM sends before a time limit): the run stops as an
    interruption, its last epoch's checkpoint kept, and resumes when started again. Like
    Ctrl-C it stops a sweep too, which then resumes from its folder."""
