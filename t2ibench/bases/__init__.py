"""Base architectures, one file each (``sd15.py``, ``sdxl.py``, ``sd3.py``, ``flux.py``,
``flux2_klein.py``): each registers itself in :mod:`t2ibench.architectures` on import, and this
package imports every module in its folder. Third parties register through the
``t2ibench.architectures`` entry-point group. See docs/methods.md ("Bases")."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
