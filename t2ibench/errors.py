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


class FileWriteError(T2IBenchError, OSError):
    """A file or folder could not be written (disk full, no permission, ...).

    Also an ``OSError`` carrying the original ``errno``, so callers can still tell a full disk.
    """

    def __init__(self, path: object, exc: OSError) -> None:
        super().__init__(f"{path}: cannot write ({exc.strerror or exc}); finished work is kept")
        self.errno, self.strerror, self.filename = exc.errno, exc.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])
