"""Errors that are the user's to fix: they print as one clear message, without a traceback."""


class CnnexpError(Exception):
    """A problem with the user's config, data or setup; the message says how to fix it."""


class ConfigError(CnnexpError):
    """A config value that cannot work."""


class DataError(CnnexpError):
    """A dataset that is missing, truncated, corrupt or laid out wrongly."""


class ModelError(CnnexpError):
    """A network that does not fit its input."""


class DivergedError(CnnexpError):
    """The training loss became NaN or exploded."""


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGUSR1 arrived (what SLURM sends before a time limit): the run stops as an
    interruption, its last epoch's checkpoint kept, and resumes when started again. Like
    Ctrl-C it stops a sweep too, which then resumes from its folder."""
