"""t2ibench: the evaluation-first benchmark suite for customized text-to-image models."""

__version__ = "0.1.0"
