"""Profiles as data: built-in TOML files, the toy world registered as a plug-in, profile files,
the offline default, and the run config's derived CLI options."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import t2ibench
from t2ibench.errors import ConfigError
from t2ibench.profiles import PROFILES, get_profile, load_profile_file, offline_profile
from t2ibench.runconfig import TRAINER_OPTIONS, Layers

PACKAGE = Path(t2ibench.__file__).parent


def test_builtin_profiles_are_data_files():
    tiny, paper = get_profile("tiny"), get_profile("paper")
    assert tiny.source.endswith("tiny.toml") and paper.source.endswith("paper.toml")
    assert tiny.values["trainer"]["epochs"] == 2 and tiny.values["base"] == "tiny"
    assert paper.values["generate"]["images_per_leaf"] == 100


def test_toy_registers_through_entry_points():
    from importlib.metadata import entry_points

    groups = ("t2ibench.profiles", "t2ibench.datasets", "t2ibench.bases", "t2ibench.sweep_hooks")
    for group in groups:
        assert any(ep.value == "t2ibench.toy.plugin" for ep in entry_points(group=group)), group
    toy = PROFILES.get("toy")
    assert toy.source.endswith("toy/profile.toml")
    if toy.available():  # the weights ship with the package: toy beats tiny offline
        assert offline_profile().name == "toy"


def test_profile_file_and_bad_keys(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "tiny"\ndataset = "demo"\n[generate]\nsteps = 3\n')
    assert get_profile(str(f)).values["generate"]["steps"] == 3
    f.write_text("[generate]\nstepz = 3\n")
    with pytest.raises(ConfigError, match=r"mine\.toml: unknown key 'generate.stepz'"):
        load_profile_file(f)
    f.write_text('[generate]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match=r"field 'generate.steps' must be an integer"):
        load_profile_file(f)
    with pytest.raises(ConfigError, match="unknown profile 'tinny'.*tiny"):
        get_profile("tinny")


def test_layers_shorthands():
    layers = Layers().add_table("a", {"trainer": "loha", "dim": 8, "generate": {"steps": 5}})
    layers.add_sets(["trainer.alpha=2", "generate.steps=6", "lr=1e-3"])
    cfg = layers.run_config()
    assert cfg.trainer == {"trainer": "loha", "dim": 8, "alpha": 2, "lr": 1e-3}
    assert cfg.generate.steps == 6
    assert layers.where["generate.steps"] == "--set generate.steps=6"


def test_trainer_options_match_the_trainer_config():
    import typing

    from t2ibench.adapters import TrainerConfig

    for key, (tp, _) in TRAINER_OPTIONS.items():
        field_type = TrainerConfig.model_fields[key].annotation
        origin = typing.get_origin(field_type) or field_type
        assert (typing.get_origin(tp) or tp) in ({tuple: list}.get(origin, origin),), key


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_core_does_not_import_the_toy_world():
    for folder in ("pipeline", "profiles"):
        for path in (PACKAGE / folder).rglob("*.py"):
            assert not any(m.startswith("t2ibench.toy") for m in _imports(path)), path
