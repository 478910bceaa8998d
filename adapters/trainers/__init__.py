"""The built-in trainers, one file each (module, config class, registration). Every module in this
folder is imported by ``t2ibench.adapters`` and registers itself: adding a trainer (DoRA, OFT) is
one new file here plus its tests."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
