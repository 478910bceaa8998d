"""lycoris-lora 4.1.3 is the oracle: same seed → same initial tensors; same tensors → same ΔW and
the same forward output (fp32 tolerance), for LoRA, LoHa and LoKr on linear and conv layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from lycoris.modules.locon import LoConModule
from lycoris.modules.loha import LohaModule
from lycoris.modules.lokr import LokrModule

from t2ibench.adapters.trainers.loha import LoHaModule
from t2ibench.adapters.trainers.lokr import LoKrModule
from t2ibench.adapters.trainers.lora import LoRAModule

LAYERS = {
    "linear": lambda: nn.Linear(64, 48),
    "linear-odd": lambda: nn.Linear(40, 36),
    "conv3x3": lambda: nn.Conv2d(32, 48, 3, padding=1),
    "conv3x3-stride": lambda: nn.Conv2d(32, 16, 3, stride=2, padding=1),
    "conv1x1": lambda: nn.Conv2d(32, 48, 1),
}


def _input(layer: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if isinstance(layer, nn.Linear):
        return torch.randn(3, 5, layer.in_features, generator=g)
    return torch.randn(2, layer.in_channels, 9, 9, generator=g)


def _pair(algo: str, layer: nn.Module, opts: dict):
    """(lycoris module, ours), both created from the same RNG state."""
    dim, alpha = opts["dim"], opts["alpha"]
    tucker = opts.get("use_tucker", False)
    torch.manual_seed(123)
    if algo == "lora":
        ref = LoConModule("m", layer, 1.0, dim, alpha, use_tucker=tucker)
        torch.manual_seed(123)
        ours = LoRAModule("m", layer, dim, alpha, use_tucker=tucker)
    elif algo == "loha":
        ref = LohaModule("m", layer, 1.0, dim, alpha, use_tucker=tucker)
        torch.manual_seed(123)
        ours = LoHaModule("m", layer, dim, alpha, use_tucker=tucker)
    else:
        kw = {k: opts[k] for k in ("factor", "decompose_both") if k in opts}
        ref = LokrModule("m", layer, 1.0, dim, alpha, use_tucker=tucker, **kw)
        torch.manual_seed(123)
        ours = LoKrModule("m", layer, dim, alpha, use_tucker=tucker, **kw)
    return ref, ours


def _ref_tensors(ref: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in ref.custom_state_dict().items()}


def _ref_delta(algo: str, ref: nn.Module) -> torch.Tensor:
    # LoCon's get_diff_weight is ΔW·scale; LoHa/LoKr's get_diff_weight scales twice in 4.1.3,
    # get_weight (what their forward uses) scales once.
    if algo == "lora":
        return ref.get_diff_weight()[0].reshape(ref.shape)
    return ref.get_weight(ref.shape)


CASES = [
    ("lora", {"dim": 4, "alpha": 2}),
    ("lora", {"dim": 8, "alpha": 1, "use_tucker": True}),
    ("loha", {"dim": 4, "alpha": 2}),
    ("loha", {"dim": 3, "alpha": 0, "use_tucker": True}),  # alpha 0 ⇒ alpha = dim
    ("lokr", {"dim": 10000, "alpha": 1, "factor": 8}),  # paper default: both blocks full, scale 1
    ("lokr", {"dim": 2, "alpha": 1, "factor": 4}),  # low-rank second block
    ("lokr", {"dim": 2, "alpha": 4, "factor": 8, "decompose_both": True}),
    ("lokr", {"dim": 2, "alpha": 1, "factor": -1, "use_tucker": True}),
]


@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize(
    ("algo", "opts"), CASES, ids=[f"{a}-{i}" for i, (a, _) in enumerate(CASES)]
)
def test_matches_lycoris(algo: str, opts: dict, layer_name: str) -> None:
    torch.manual_seed(0)
    layer = LAYERS[layer_name]()
    ref, ours = _pair(algo, layer, opts)

    # 1. identical initialisation (shapes, values, alpha and scale)
    ref_t = _ref_tensors(ref)
    ours_t = {k: v.detach() for k, v in ours.state_items().items()}
    assert sorted(ref_t) == sorted(ours_t)
    for k in ref_t:
        assert ref_t[k].shape == ours_t[k].shape, k
        torch.testing.assert_close(ours_t[k].float(), ref_t[k].float(), rtol=0, atol=0, msg=k)
    assert ours.scale == pytest.approx(float(ref.scale))

    # 2. random tensors (so ΔW ≠ 0), copied into ours through the file loader
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    loaded = type(ours).from_state("m", layer, _ref_tensors(ref))
    torch.testing.assert_close(loaded.delta_weight(), _ref_delta(algo, ref), rtol=1e-5, atol=1e-6)

    # 3. forward outputs, multiplier 1 and 0.5
    x = _input(layer)
    base = layer(x)
    for mult in (1.0, 0.5):
        ref.multiplier = mult
        ref.apply_to()
        want = layer(x)
        ref.restore()
        loaded.multiplier = mult
        loaded.attach()
        got = layer(x)
        loaded.detach_()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(want, base)  # the adapter does something
    torch.testing.assert_close(layer(x), base, rtol=0, atol=0)  # detached: the base layer again


@pytest.mark.parametrize("algo", ["lora", "loha", "lokr"])
def test_backend_pinned_to_torch(algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """lycoris-lora picks a kernel backend per call (env ``LYCORIS_KERNEL_BACKEND``, fused CUDA
    kernels first); ours always runs the plain torch body, whatever the environment asks for."""
    import lycoris.functional.general as general
    import lycoris.functional.locon as locon
    import lycoris.functional.loha as loha
    import lycoris.functional.lokr as lokr

    def refuse(*a, **k):
        raise AssertionError("a non-torch lycoris backend was used")

    for mod in (general, locon, loha, lokr):
        monkeypatch.setattr(mod, "call_compiled", refuse, raising=False)
    monkeypatch.setenv("LYCORIS_KERNEL_BACKEND", "compile")
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 8, 3, padding=1)
    _, ours = _pair(algo, layer, {"dim": 2, "alpha": 1, "factor": 2})
    ours.attach()
    layer(torch.randn(1, 8, 5, 5)).sum().backward()
    ours.detach_()
    ours.delta_weight()
    # the same call without the pin does go to the compile tier (so the check above is real)
    with pytest.raises(AssertionError, match="non-torch"):
        locon.diff_weight(torch.ones(2, 8), torch.ones(8, 2), None, gamma=1.0)


def test_lora_gradients_match_lycoris() -> None:
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 24, 3, padding=1)
    ref, ours = _pair("lora", layer, {"dim": 4, "alpha": 2})
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.2)
    loaded = LoRAModule.from_state("m", layer, _ref_tensors(ref))
    x = _input(layer)
    ref.apply_to()
    layer(x).square().mean().backward()
    ref.restore()
    loaded.attach()
    layer(x).square().mean().backward()
    loaded.detach_()
    torch.testing.assert_close(loaded.lora_up.grad, ref.lora_up.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        loaded.lora_down.grad, ref.lora_down.weight.grad, rtol=1e-4, atol=1e-6
    )
