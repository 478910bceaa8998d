"""t2ibench: the evaluation-first benchmark suite for customized text-to-image models."""

__version__ = "0.1.0"

# The built-in base architectures register themselves (light modules: no torch, no diffusers).
import t2ibench.bases  # noqa: E402,F401


def __getattr__(name: str):
    # ``t2ibench.evaluate(...)`` without making ``import t2ibench`` load torch.
    if name == "evaluate":
        from t2ibench.api import evaluate

        return evaluate
    raise AttributeError(f"module 't2ibench' has no attribute {name!r}")
