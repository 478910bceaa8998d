"""Importers that turn other tools' metric tables into the t2ibench results schema."""

from t2ibench.importers.lycoris_eval import (
    PAPER_EXCLUDED_CONFIGS,
    import_lycoris_eval,
    parse_checkpoint,
    parse_column,
    read_config_mapping,
)

__all__ = [
    "PAPER_EXCLUDED_CONFIGS",
    "import_lycoris_eval",
    "parse_checkpoint",
    "parse_column",
    "read_config_mapping",
]
