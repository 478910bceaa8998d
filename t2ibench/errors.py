"""User-facing errors: each names the file and field at fault, and the CLI prints it in one line."""


class T2IBenchError(Exception):
    """Base class of every error the CLI reports without a traceback."""


class DatasetError(T2IBenchError, ValueError):
    """A dataset folder breaks the spec (unreadable image, missing caption, unknown key, ...)."""


class ConfigError(T2IBenchError, ValueError):
    """A config file or ``--set`` override is invalid (unknown key, wrong type, ...)."""


class ResultsError(T2IBenchError, ValueError):
    """A results table or evaluation-code CSV cannot be read or has nothing usable."""


class MissingExtraError(T2IBenchError, ImportError):
    """An optional feature needs an extra that is not installed."""
