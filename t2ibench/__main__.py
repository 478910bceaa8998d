"""``python -m t2ibench`` = the ``t2ibench`` command."""

from t2ibench.cli import main

main()
