"""Every lycoris-lora algorithm and every listed PEFT tuner, on SD1.5-, SDXL- and FLUX-class tiny
denoisers: the layers t2ibench adapts from a SAVED FILE compute what the owning library's own
modules compute from the same file (1e-5), and t2ibench's trainers of these families write files
the owning library reads back to the same outputs."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn as nn
from methods_testutil import (
    ARCHS,
    TEST_LAYERS,
    layer_input,
    lycoris_preset,
    named_layers,
    perturb,
    pipe_of,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOL = 1e-5

# name → (lycoris algo, its keyword arguments); dim 4, alpha 2 for all
LYCORIS_CASES = {
    "lora": ("lora", {}),
    "lora-tucker": ("lora", {"use_tucker": True}),
    "dora": ("lora", {"weight_decompose": True}),
    "loha": ("loha", {}),
    "loha-dora": ("loha", {"weight_decompose": True}),
    "lokr": ("lokr", {"factor": 4}),
    "lokr-dora": ("lokr", {"factor": 4, "weight_decompose": True}),
    "diag-oft": ("diag-oft", {}),
    "diag-oft-coft-rescaled": ("diag-oft", {"constraint": 1e-2, "rescaled": True}),
    "boft": ("boft", {}),
    "glora": ("glora", {}),
    "ia3": ("ia3", {}),
    "ia3-input": ("ia3", {"train_on_input": True}),
    "dylora": ("dylora", {"block_size": 2}),
    "full": ("full", {}),
    "tlora": ("tlora", {}),
}


@pytest.fixture(autouse=True)
def _one_gc_per_test_not_per_tlora_layer(monkeypatch):
    """lycoris' ``TLoraModule.__init__`` ends with ``gc.collect()`` ("Cleanup", lycoris/modules/
    tlora.py): a full collection per layer built, seconds each on a test process's large heap
    (140 s for one tiny-model case). It only frees memory sooner; no value depends on it."""
    import types

    import lycoris.modules.tlora as tlora

    monkeypatch.setattr(tlora, "gc", types.SimpleNamespace(collect=lambda *a: 0))


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    err = float((got - want).abs().max())
    scale = max(1.0, float(want.abs().max()))
    assert err <= TOL * scale, f"{what}: max |diff| {err:.3g} (scale {scale:.3g})"


def _test_layers(model: nn.Module, arch: str, linear_only: bool = False) -> list[str]:
    layers = named_layers(model)
    names = TEST_LAYERS[arch]
    assert set(names) <= set(layers), sorted(set(names) - set(layers))
    return [n for n in names if not linear_only or isinstance(layers[n], nn.Linear)]


def _lycoris_network(model: nn.Module, arch: str, algo: str, kw: dict, prefix: str = "lycoris"):
    from lycoris import LycorisNetwork

    # lycoris-lora 4.1.3 itself fails on convolutions for T-LoRA (k×k: shape mismatch in its
    # forward) and DyLoRA (it saves 2-D ups its own loader refuses): their cases adapt Linears
    names = _test_layers(model, arch, linear_only=algo in ("tlora", "dylora"))
    if algo == "boft":  # BOFT needs a butterfly factorisation of the output size (not 96)
        names = [n for n in names if n != "transformer_blocks.0.norm1.linear"]
    preset = {
        "target_module": [],
        "target_name": [rf"^{re.escape(n)}$" for n in names],
        "module_algo_map": {},
        "name_algo_map": {},
        "lora_prefix": prefix,
        "exclude_name": [],
        "use_fnmatch": False,
    }
    with lycoris_preset(preset):
        return LycorisNetwork(
            model,
            multiplier=1.0,
            lora_dim=4,
            conv_lora_dim=4,
            alpha=2,
            conv_alpha=2,
            network_module=algo,
            **kw,
        )


def _lycoris_reads(model: nn.Module, path, prefix: str) -> dict[str, torch.Tensor]:
    """layer name → the layer's output through lycoris-lora's own modules built from ``path``
    (``create_lycoris_from_weights``)."""
    from lycoris import create_lycoris_from_weights

    with lycoris_preset({"lora_prefix": prefix}):
        net, _ = create_lycoris_from_weights(1.0, str(path), model)
    assert net.loras, "lycoris-lora read no module from the file"
    names = {prefix + "_" + n.replace(".", "_"): n for n in named_layers(model)}
    out = {}
    with torch.no_grad():
        for lyco in net.loras:
            layer = lyco.org_module[0]
            out[names[lyco.lora_name]] = lyco(layer_input(layer))
    return out


def _t2ibench_applies(model: nn.Module, path, arch: str) -> dict[str, torch.Tensor]:
    """layer name → the layer's output with t2ibench's ``apply_adapter`` of ``path``."""
    from t2ibench.adapters import apply_adapter

    layers = named_layers(model)
    with apply_adapter(pipe_of(model, arch), path) as handle, torch.no_grad():
        adapted = {m.org for m in handle.network}
        return {n: layer(layer_input(layer)) for n, layer in layers.items() if layer in adapted}


# lycoris' T-LoRA runs gc.collect() per module it builds: seconds per case in a test process
_SLOW: set[str] = set()  # T-LoRA was, until its per-layer gc.collect was skipped (fixture)


def _cases(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in names]


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("case", _cases(sorted(LYCORIS_CASES)))
def test_lycoris_saved_file_applies_as_lycoris(arch: str, case: str, tmp_path) -> None:
    """A file written by lycoris-lora's ``save_weights`` (``lycoris_<path>`` keys, as
    ``create_lycoris`` and SimpleTuner write it): t2ibench's layer outputs equal lycoris' own
    modules', before saving and as lycoris reads the file back."""
    algo, kw = LYCORIS_CASES[case]
    torch.manual_seed(0)
    model = ARCHS[arch]().eval()
    net = _lycoris_network(model, arch, algo, kw)
    if not net.loras:
        pytest.skip(f"lycoris-lora adapts no layer of the {arch} class with {algo}")
    net.apply_to()
    perturb(net)
    path = tmp_path / "lycoris.safetensors"
    net.save_weights(str(path), torch.float32, {})
    net.restore()
    trained = {}
    if algo != "dylora":  # DyLoRA's forward trains a random rank prefix per call
        names = {"lycoris_" + n.replace(".", "_"): n for n in named_layers(model)}
        with torch.no_grad():
            for lyco in net.loras:
                trained[names[lyco.lora_name]] = lyco(layer_input(lyco.org_module[0]))
    # lycoris-lora 4.1.3 cannot read its own IA3 files (its loader's signature): the modules
    # saved are the oracle there
    want = trained if algo == "ia3" else _lycoris_reads(model, path, "lycoris")
    got = _t2ibench_applies(model, path, arch)
    assert sorted(got) == sorted(want)
    for name in want:
        _close(got[name], want[name], f"{case} {name} (lycoris' reading)")
        if trained:
            _close(got[name], trained[name], f"{case} {name} (the modules saved)")


LYCORIS_TRAINERS = [
    ("lycoris-lora", {}),
    ("lycoris-dora", {}),
    ("dora", {"use_tucker": True}),
    ("lycoris-loha", {"weight_decompose": True}),
    ("lycoris-lokr", {"factor": 4, "dim": 2, "weight_decompose": True}),
    ("lycoris-oft", {"dim": 4, "rescaled": True}),
    ("lycoris-boft", {"dim": 4, "constraint": 1e-2}),
    ("lycoris-glora", {}),
    ("lycoris-ia3", {}),
    ("lycoris-dylora", {"block_size": 2}),
    ("lycoris-tlora", {}),
]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize(
    ("trainer", "opts"),
    [
        pytest.param(t, o, id=t, marks=[pytest.mark.slow] if t in _SLOW else [])
        for t, o in LYCORIS_TRAINERS
    ],
)
def test_lycoris_trainer_file_reads_in_lycoris(arch: str, trainer: str, opts: dict, tmp_path):
    """What t2ibench's ``lycoris-*`` trainers save (fp16, kohya keys) is what lycoris-lora's own
    kohya-keyed reading applies, layer by layer."""
    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.files import build_metadata, save_adapter
    from t2ibench.adapters.presets import kohya_name

    spec = get_trainer(trainer)
    cfg = spec.config([("test", {"preset": "attn-mlp", "train_text_encoder": False, **opts})])
    torch.manual_seed(0)
    model = ARCHS[arch]().eval()
    net = spec.build_network({"unet": model, "te": None}, cfg)
    assert len(net) > 0
    perturb(net)
    with torch.no_grad():  # the file is fp16: the modules as saved
        for p in net.parameters():
            p.copy_(p.half().float())
    path = tmp_path / "ours.safetensors"
    save_adapter(net, path, build_metadata(cfg, None))
    got = _t2ibench_applies(model, path, arch)
    if trainer == "lycoris-ia3":  # lycoris cannot read IA3 files (above): the modules saved
        with torch.no_grad():
            want = {}
            for name, layer in named_layers(model).items():
                m = net.adapters.get(kohya_name("unet", name))
                if m is not None:
                    want[name] = m.lyco(layer_input(layer))
    else:
        want = _lycoris_reads(model, path, "lora_unet")
    assert sorted(got) == sorted(want) and len(got) == len(net)
    for name in want:
        _close(got[name], want[name], f"{trainer} {name}")


# --- PEFT -------------------------------------------------------------------------------------------

# name → (PEFT config class name, its arguments)
PEFT_CASES = {
    "lora": ("LoraConfig", {"r": 4, "lora_alpha": 2}),
    "lora-rslora": ("LoraConfig", {"r": 4, "lora_alpha": 3, "use_rslora": True}),
    "dora": ("LoraConfig", {"r": 4, "lora_alpha": 2, "use_dora": True}),
    "loha": ("LoHaConfig", {"r": 4, "alpha": 2}),
    "lokr": ("LoKrConfig", {"r": 4, "alpha": 2}),
    "oft": ("OFTConfig", {"r": 0, "oft_block_size": 4}),
    "oft-coft": ("OFTConfig", {"r": 0, "oft_block_size": 4, "coft": True, "eps": 1e-2}),
    "boft": ("BOFTConfig", {"boft_block_size": 4}),
    "vera": ("VeraConfig", {"r": 4}),
    "hra": ("HRAConfig", {"r": 4}),
    "ia3": ("IA3Config", {"feedforward_modules": []}),
    "ia3-ff": ("IA3Config", {"feedforward": True}),
}


def _peft_config(case: str, targets: list[str]):
    import peft

    cls_name, kw = PEFT_CASES[case]
    kw = dict(kw)
    if kw.pop("feedforward", False):  # IA3 scales the input of these (all but attention)
        kw["feedforward_modules"] = [t for t in targets if "attn" not in t]
    return getattr(peft, cls_name)(target_modules=targets, **kw)


def _peft_layers(model: nn.Module, arch: str, case: str) -> list[str]:
    linear_only = case == "vera"  # PEFT's VeRA adapts Linear layers only
    return _test_layers(model, arch, linear_only=linear_only)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("case", sorted(PEFT_CASES))
def test_peft_saved_folder_applies_as_peft(arch: str, case: str, tmp_path) -> None:
    """A folder written by PEFT's ``save_pretrained`` (``adapter_config.json`` +
    ``adapter_model.safetensors``): t2ibench's layer outputs equal PEFT's own layers'."""
    import copy

    import peft

    torch.manual_seed(0)
    model = ARCHS[arch]().eval()
    base = copy.deepcopy(model)
    targets = _peft_layers(model, arch, case)
    pm = peft.get_peft_model(model, _peft_config(case, targets))
    perturb(pm.base_model)
    with torch.no_grad():
        want = {}
        for name in targets:
            layer = pm.base_model.model.get_submodule(name)
            want[name] = layer(layer_input(layer.get_base_layer()))
    pm.save_pretrained(str(tmp_path / "peft"))
    got = _t2ibench_applies(base, tmp_path / "peft", arch)
    assert sorted(got) == sorted(want)
    for name in want:
        _close(got[name], want[name], f"{case} {name}")


PEFT_TRAINERS = [
    ("peft-lora", {}),
    ("peft-dora", {}),
    ("peft-loha", {}),
    ("peft-lokr", {"factor": 4}),
    ("peft-oft", {"block_size": 4}),
    ("peft-boft", {"block_size": 4}),
    ("peft-vera", {"dim": 8}),
    ("peft-hra", {}),
    ("peft-ia3", {}),
]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize(("trainer", "opts"), PEFT_TRAINERS, ids=[t for t, _ in PEFT_TRAINERS])
def test_peft_trainer_file_reads_in_peft(arch: str, trainer: str, opts: dict, tmp_path) -> None:
    """What t2ibench's ``peft-*`` trainers save (fp16, kohya stems, PEFT suffixes): PEFT's own
    ``set_peft_model_state_dict`` loads it into a PEFT model of the same config, whose layers
    compute what t2ibench applies from the file."""
    import copy

    import peft

    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.files import build_metadata, save_adapter
    from t2ibench.adapters.presets import kohya_name

    spec = get_trainer(trainer)
    cfg = spec.config([("test", {"preset": "attn-only", "train_text_encoder": False, **opts})])
    torch.manual_seed(0)
    model = ARCHS[arch]().eval()
    base = copy.deepcopy(model)
    net = spec.build_network({"unet": model, "te": None}, cfg)
    assert len(net) > 0
    perturb(net)
    path = tmp_path / "ours.safetensors"
    save_adapter(net, path, build_metadata(cfg, None))
    got = _t2ibench_applies(model, path, arch)

    from safetensors.torch import load_file

    saved = load_file(str(path))
    stems = {kohya_name("unet", n): n for n in named_layers(base)}
    targets = sorted({stems[k.partition(".")[0]] for k in saved})
    data = json.loads(cfg.peft_config_json())
    if trainer == "peft-vera":
        data["save_projection"] = False  # the per-layer projections are set below
    config = peft.PeftConfig.from_peft_type(**{**data, "target_modules": targets})
    pm = peft.get_peft_model(base, config)
    state = {}
    for key, value in saved.items():
        stem, _, suffix = key.partition(".")
        if suffix in ("vera_A", "vera_B"):
            continue  # per-layer projection slices: compared below
        state[f"base_model.model.{stems[stem]}.{suffix}"] = value.float()
    result = peft.set_peft_model_state_dict(pm, state)
    assert not result.unexpected_keys
    with torch.no_grad():
        for name in targets:
            layer = pm.base_model.model.get_submodule(name)
            if trainer == "peft-vera":  # t2ibench's VeRA: a projection per layer (docs)
                stem = kohya_name("unet", name)
                layer.vera_A["default"] = saved[f"{stem}.vera_A"].float()
                layer.vera_B["default"] = saved[f"{stem}.vera_B"].float()
            _close(got[name], layer(layer_input(layer.get_base_layer())), f"{trainer} {name}")


MERGE_CASES = [
    ("lycoris-lora", {}),
    ("dora", {}),
    ("lycoris-loha", {"weight_decompose": True}),
    ("lycoris-lokr", {"factor": 4, "dim": 2, "weight_decompose": True}),
    ("lycoris-oft", {"dim": 4, "rescaled": True}),
    ("lycoris-boft", {"dim": 8}),
    ("lycoris-glora", {}),
    ("lycoris-ia3", {"train_on_input": True}),
    ("peft-dora", {}),
    ("peft-loha", {}),
    ("peft-boft", {}),
    ("peft-hra", {}),
    ("peft-ia3", {}),
]


@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv3x3"])
@pytest.mark.parametrize(("trainer", "opts"), MERGE_CASES, ids=[t for t, _ in MERGE_CASES])
def test_merge_equals_forward(trainer: str, opts: dict, conv: bool) -> None:
    """``merge_adapter``'s W + ΔW (and b + Δb) computes what the adapted layer computes (for
    lycoris' LoHa / LoKr despite 4.1.3's twice-scaled get_merged_weight)."""
    from t2ibench.adapters import get_trainer

    layer = nn.Conv2d(16, 32, 3, padding=1) if conv else nn.Linear(32, 64)
    spec = get_trainer(trainer)
    torch.manual_seed(0)
    m = spec.create_module("lora_unet_x", layer, spec.config([("test", opts)]))
    perturb(m)
    x = layer_input(layer)
    m.attach()
    with torch.no_grad():
        y = layer(x)
        db = m.delta_bias()
        bias = layer.bias if db is None else layer.bias + db
        merged = m._op(x, layer.weight + m.delta_weight(), bias)
    m.detach_()
    assert not torch.equal(y, layer(x))
    _close(merged, y, f"{trainer} merge")


def test_lycoris_suffixes_are_the_installed_lycoris_ones():
    """``LYCORIS_SUFFIXES`` is stated (registering trainers must not import lycoris); it must be
    exactly the tensor names lycoris-lora's own modules save."""
    from lycoris.modules import MODULE_LIST

    from t2ibench.adapters.lycoris_wrap import LYCORIS_SUFFIXES

    saved = {k for cls in MODULE_LIST for k in getattr(cls, "weight_list", ())}
    assert tuple(sorted(saved)) == LYCORIS_SUFFIXES
