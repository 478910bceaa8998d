"""Profiles, named datasets and base models, and post-sweep hooks: the data above the core.

A **profile** is one TOML file of run-config defaults (the keys of
:class:`t2ibench.runconfig.RunConfig`) plus a ``[profile]`` table::

    base = "tiny"
    dataset = "demo"

    [profile]
    description = "tiny random models: proves the pipes connect"
    offline_priority = 0      # a candidate for the offline default (highest available wins)

    [trainer]
    epochs = 2
    [generate]
    steps = 10
    [evaluate]
    encoders = ["dinov2-l@tiny"]

The built-ins are the ``*.toml`` files next to this module (``tiny``, ``paper``); plug-ins register
theirs through the ``t2ibench.profiles`` entry-point group (an entry point names a :class:`Profile`
or a module that calls :func:`register_profile`), and ``--profile path/to/file.toml`` takes a file
as it is. **Named datasets and bases** (``--dataset demo``, ``--base toy``) are paths a plug-in
builds or ships (groups ``t2ibench.datasets``, ``t2ibench.bases``); **sweep hooks** (group
``t2ibench.sweep_hooks``) run after a sweep's joint report and may add report sections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.registry import Registry, UnknownNameError
from t2ibench.validation import read_toml


@dataclass(frozen=True)
class Profile:
    """Run-config defaults with a name (``values`` is a nested table of RunConfig keys)."""

    name: str
    description: str
    values: Mapping[str, Any]
    offline_priority: int | None = None
    source: str = ""

    def available(self) -> bool:
        """Whether the named base and dataset it uses (if any) can be had on this machine."""
        for registry, key in ((BASES, "base"), (DATASETS, "dataset")):
            spec = self.values.get(key)
            if isinstance(spec, str) and spec in registry and not registry.get(spec).available():
                return False
        return True


@dataclass(frozen=True)
class NamedPath:
    """A dataset or base model known by name: ``path()`` builds or finds it, ``available()`` says
    whether it can be had here (e.g. whether shipped weights are installed)."""

    name: str
    description: str
    path: Callable[[], Path]
    available: Callable[[], bool] = field(default=lambda: True)


@dataclass(frozen=True)
class SweepHook:
    """Runs after a sweep's joint analysis: ``run(sweep_dir, report_dir, run_dirs)`` returns the
    report sections (``t2ibench.analysis.report.Section``) to add, or none."""

    name: str
    description: str
    run: Callable[..., list]


PROFILES: Registry[Profile] = Registry("profile", "t2ibench.profiles")
DATASETS: Registry[NamedPath] = Registry("named dataset", "t2ibench.datasets")
BASES: Registry[NamedPath] = Registry("named base", "t2ibench.bases")
SWEEP_HOOKS: Registry[SweepHook] = Registry("sweep hook", "t2ibench.sweep_hooks")


def load_profile_file(path: str | Path, name: str | None = None) -> Profile:
    """A profile from its TOML file; the keys are checked against the run config."""
    from t2ibench.runconfig import Layers

    path = Path(path)
    data = read_toml(path, "profile")
    meta = data.pop("profile", {})
    unknown = set(meta) - {"description", "offline_priority"}
    if unknown:
        raise ConfigError(f"{path}: profile.{sorted(unknown)[0]}: unknown key")
    Layers().add_table(str(path), data).run_config()  # bad keys fail here, not mid-run
    return Profile(
        name=name or path.stem,
        description=str(meta.get("description", "")),
        values=data,
        offline_priority=meta.get("offline_priority"),
        source=str(path),
    )


def register_profile(profile: Profile, *, overwrite: bool = False) -> Profile:
    return PROFILES.register(profile.name, profile, overwrite=overwrite)


def register_dataset(named: NamedPath, *, overwrite: bool = False) -> NamedPath:
    return DATASETS.register(named.name, named, overwrite=overwrite)


def register_base(named: NamedPath, *, overwrite: bool = False) -> NamedPath:
    return BASES.register(named.name, named, overwrite=overwrite)


def register_sweep_hook(hook: SweepHook, *, overwrite: bool = False) -> SweepHook:
    return SWEEP_HOOKS.register(hook.name, hook, overwrite=overwrite)


def get_profile(spec: str) -> Profile:
    """A registered profile by name, or a profile file by path."""
    if spec.endswith(".toml"):
        return load_profile_file(spec)
    try:
        profile = PROFILES.get(spec)
    except UnknownNameError as exc:
        raise ConfigError(f"--profile: {exc}") from None
    if not profile.available():
        raise ConfigError(
            f"--profile {spec}: its base or dataset is not installed here ({profile.source})"
        )
    return profile


def list_profiles() -> list[str]:
    return PROFILES.names()


def offline_profile() -> Profile:
    """The available offline profile with the highest priority (a plug-in's world with real
    weights beats the tiny random stand-ins)."""
    candidates = [
        PROFILES.get(n) for n in PROFILES.names() if PROFILES.get(n).offline_priority is not None
    ]
    candidates = [p for p in candidates if p.available()]
    if not candidates:
        raise ConfigError("no offline profile is available; pass --base and --dataset")
    return max(candidates, key=lambda p: (p.offline_priority, p.name))


def is_named(kind: str, spec: str | None) -> bool:
    """Whether ``spec`` is a registered dataset / base name (not a path or hub id)."""
    return spec is not None and spec in (DATASETS if kind == "dataset" else BASES)


def resolve_named(kind: str, spec: str | None) -> str | None:
    """A named dataset or base as its path; anything else unchanged."""
    registry = DATASETS if kind == "dataset" else BASES
    if spec is None or spec not in registry:
        return spec
    named = registry.get(spec)
    if not named.available():
        raise ConfigError(f"--{kind} {spec}: not installed here ({named.description})")
    return str(named.path())


# -- the built-ins: the profile files in this folder and the demo dataset ---------------------------


def _demo_dataset() -> Path:
    from t2ibench.data import make_demo_dataset
    from t2ibench.fsutil import cache_root

    root = cache_root() / "demo-dataset"
    if not (root / "dataset.toml").is_file():
        make_demo_dataset(root)
    return root


register_dataset(
    NamedPath("demo", "the procedural demo dataset (written once into the cache)", _demo_dataset)
)
for _file in sorted(resources.files(__name__).iterdir(), key=lambda f: f.name):
    if _file.name.endswith(".toml"):
        register_profile(load_profile_file(Path(str(_file))))
