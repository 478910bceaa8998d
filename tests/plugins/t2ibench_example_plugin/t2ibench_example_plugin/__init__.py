"""Example t2ibench plug-in (a test fixture that is also the README's "Extending t2ibench").

- ``brightness``: a metric on a new input kind, ``pixels`` (the generated images themselves, no
  encoder), with the input provider that supplies it and a new criterion, ``exposure``;
- ``closeup``: a prompt type;
- ``mean-colour``: an image encoder (per-channel mean and standard deviation).

Each module registers itself on import; the entry points in ``pyproject.toml`` name the modules.
"""
