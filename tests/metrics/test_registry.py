"""The metric registry: metadata, lookups, entry points, and a light import."""

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

import t2ibench.metrics as metrics
from t2ibench.metrics import METRICS, MetricSpec, get_metric, list_metrics
from t2ibench.registry import Registry, UnknownNameError


def test_builtins_and_metadata():
    names = list_metrics()
    for name in [
        "image_similarity",
        "centroid_distance",
        "text_alignment",
        "vendi",
        "style_loss",
        "frechet_distance",
        "liqe",
        "maniqa",
    ]:
        assert name in names
    assert get_metric("centroid_distance").higher_is_better is False
    assert get_metric("style_loss").higher_is_better is False
    assert get_metric("image_similarity").higher_is_better is True
    assert get_metric("vendi").criterion == "diversity"
    assert get_metric("text_alignment").references == ("prompts",)
    assert get_metric("style_loss").references == ("base_images",)
    assert get_metric("style_loss").applies_to("style") and not get_metric("style_loss").applies_to(
        "train"
    )
    for name in names:
        spec = get_metric(name)
        lo, hi = spec.range
        assert lo < hi


def test_function_and_stream_agree_through_spec():
    spec = get_metric("image_similarity")
    g, r = torch.randn(5, 3), torch.randn(4, 3)
    s = spec.stream()
    s.update(gen=g, ref=r)
    assert s.compute() == pytest.approx(spec.function(gen=g, ref=r), abs=1e-12)


def test_unknown_metric_message_lists_close_matches():
    with pytest.raises(UnknownNameError, match="image_similarity"):
        get_metric("image_similarty")


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="criterion"):
        MetricSpec("x", "Beauty!", None, (), True, (0, 1), len, list, ("feats",))
    with pytest.raises(ValueError, match="reference"):
        MetricSpec("x", "beauty", None, ("Dataset Images",), True, (0, 1), len, list, ("feats",))
    with pytest.raises(ValueError, match="no inputs"):
        MetricSpec("x", "beauty", None, (), True, (0, 1), len, list, ())


def test_criteria_references_and_prompt_types_are_open():
    # A new criterion and reference kind are plain names; the criteria are what metrics declare.
    spec = MetricSpec("x", "beauty", None, ("sketches",), True, (0, 1), len, list, ("feats",))
    assert spec.criterion == "beauty" and spec.references == ("sketches",)
    assert set(metrics.list_criteria()) >= {"fidelity", "controllability", "diversity"}
    # Prompt types are checked against the prompt-type registry when the metric is used.
    from t2ibench.errors import ConfigError
    from t2ibench.prompts import PROMPT_TYPES, register_prompt_type

    late = MetricSpec(
        "x", "beauty", None, (), True, (0, 1), len, list, ("feats",), prompt_types=("sketch",)
    )
    with pytest.raises(
        ConfigError, match=r"metric 'x' names unknown prompt type\(s\) \['sketch'\]"
    ):
        late.check_prompt_types()
    register_prompt_type("sketch", "test only")(lambda leaf, ds, n: [])
    try:
        late.check_prompt_types()
    finally:
        PROMPT_TYPES._items.pop("sketch")


def test_each_builtin_registers_in_its_own_file():
    # No central list: the spec's function lives in the module that registered it.
    for name in list_metrics():
        spec = get_metric(name)
        assert spec.function.__module__.startswith("t2ibench.metrics."), name
    import t2ibench.metrics as package

    source = Path(package.__file__).read_text()
    assert "MetricSpec(" not in source and "register_metric(" not in source.split("__all__")[0]


def test_report_uses_name_registered_prompt_types():
    for name in list_metrics():
        get_metric(name).check_prompt_types()
    assert get_metric("text_alignment").report.criterion == ("alter",)
    assert get_metric("text_alignment").options == {"convention": "cosine"}


def test_entry_point_plugin(monkeypatch):
    spec = MetricSpec(
        "plugin_metric",
        "quality",
        None,
        (),
        True,
        (0.0, 1.0),
        metrics.mean_score,
        metrics.MeanScore,
        ("scores",),
    )
    reg = Registry("metric", entry_point_group="t2ibench.test-metrics")
    ep = EntryPoint("plugin_metric", "t2ibench_fake_plugin:SPEC", "t2ibench.test-metrics")
    fake = type(sys)("t2ibench_fake_plugin")
    fake.SPEC = spec
    monkeypatch.setitem(sys.modules, "t2ibench_fake_plugin", fake)
    import t2ibench.registry as registry_mod

    monkeypatch.setattr(
        registry_mod, "entry_points", lambda group: [ep] if group == reg.entry_point_group else []
    )
    assert reg.get("plugin_metric") is spec
    assert "plugin_metric" in reg.names()
    assert METRICS.entry_point_group == "t2ibench.metrics"


def test_import_is_light():
    code = (
        "import sys, t2ibench.metrics; "
        "bad = [m for m in ('diffusers', 'transformers', 'open_clip', 'timm') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
