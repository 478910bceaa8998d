"""The adapters' error, in its own module so that every module of the package can raise it
(``files`` and ``foreign`` use each other)."""

from t2ibench.errors import T2IBenchError


class AdapterFileError(T2IBenchError, ValueError):
    """An adapter file cannot be read or does not fit the base model."""
