"""Package discovery: the trainers live in the top-level ``adapters/`` folder and the prompt
templates in ``prompts/``, but both install inside the ``t2ibench`` namespace
(``t2ibench.adapters``, ``t2ibench.prompt_files``) so one distribution owns one import root."""

from setuptools import find_packages, setup

MAPPED = {"t2ibench.adapters": "adapters", "t2ibench.prompt_files": "prompts"}

packages = ["t2ibench"] + [f"t2ibench.{p}" for p in find_packages("t2ibench")]
package_dir = {"t2ibench": "t2ibench"}
for name, folder in MAPPED.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
