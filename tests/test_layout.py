"""Source tree = import tree: a plain checkout imports what the installed wheel ships."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Drop any installed (editable) t2ibench finder, so only the checkout on PYTHONPATH can answer.
CHECKOUT_ONLY = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import t2ibench.adapters, t2ibench.prompt_files, t2ibench.prompts
print(t2ibench.adapters.__file__)
print(t2ibench.prompt_files.__file__)
print(t2ibench.prompts.list_alter_sets()[0])
"""


def test_checkout_imports_adapters_and_prompt_files_without_install(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHECKOUT_ONLY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    adapters, prompt_files, first_set = out.stdout.split()
    assert Path(adapters) == ROOT / "t2ibench" / "adapters" / "__init__.py"
    assert Path(adapters).resolve() == ROOT / "adapters" / "__init__.py"
    assert Path(prompt_files).resolve() == ROOT / "prompts" / "__init__.py"
    assert first_set  # the templates resolve through importlib.resources too


def test_packaging_finds_the_same_packages():
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), include=["t2ibench", "t2ibench.*"]))
    assert {"t2ibench.adapters", "t2ibench.prompt_files", "t2ibench.toy"} <= found
    assert not any(name.startswith(("tools", "tests")) for name in found)
