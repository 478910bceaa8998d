"""The ``--device`` check every command makes before any work starts."""

from __future__ import annotations

from t2ibench.errors import ConfigError


def check_device(device: str) -> None:
    """A bogus device, or CUDA without a GPU, is one clear line before any work starts."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"--device {device!r}: not a device ({exc}); use cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {device}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device!r}: unsupported; use cpu, cuda or cuda:N")
