"""Scripts that rebuild the toy world's shipped weights (``t2ibench/toy/weights/``) and measure them.

Run from the repository root: ``python -m tools.toy.train_vae`` etc. (see ``t2ibench/toy/README.md``).
"""
