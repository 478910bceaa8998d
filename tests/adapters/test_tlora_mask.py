"""T-LoRA's timestep rank mask: the training loop's per-step hook sets lycoris' own mask from the
step's noise level (epsilon timesteps out of 1000, flow matching's σ out of 1), the masked ranks
get no gradient, training leaves no mask behind, and a trained file's layers equal lycoris-lora's
own modules read from the file at the same mask."""

from __future__ import annotations

import types
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from t2ibench.adapters import get_trainer, train_run


@pytest.fixture(autouse=True)
def _no_gc_per_tlora_layer(monkeypatch):
    """lycoris' TLoraModule.__init__ runs gc.collect() per layer (seconds each in a test
    process; see test_methods_parity.py); no value depends on it."""
    import lycoris.modules.tlora as tlora

    monkeypatch.setattr(tlora, "gc", types.SimpleNamespace(collect=lambda *a: 0))
    yield
    tlora.clear_timestep_mask()


def _active(mask: torch.Tensor) -> int:
    return int(mask.sum())


def _module(dim: int = 4, min_rank: int = 1):
    spec = get_trainer("lycoris-tlora")
    cfg = spec.config([("test", {"dim": dim, "alpha": dim, "min_rank": min_rank})])
    torch.manual_seed(0)
    module = spec.module_class.create("lora_unet_layer", nn.Linear(12, 10), cfg)
    return spec, cfg, module


@pytest.mark.parametrize(
    ("t", "max_t", "ranks"),
    [
        (999, 1000, 1),  # epsilon base, highest noise: min_rank only
        (500, 1000, 2),  # r = ⌊0.5·(4 − 1)⌋ + 1
        (0, 1000, 4),  # clean: every rank
        (1.0, 1.0, 1),  # flow matching: σ = 1 is pure noise
        (0.5, 1.0, 2),
        (0.0, 1.0, 4),
    ],
)
def test_masked_ranks_get_no_gradient(t, max_t, ranks) -> None:
    from lycoris.modules.tlora import get_timestep_mask

    spec, cfg, module = _module()
    spec.before_step(None, cfg, torch.tensor([t]), max_t)
    assert _active(get_timestep_mask()) == ranks
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(1))
    module(x).square().sum().backward()
    lyco = module.lyco
    grads = {
        "lambda": lyco.lambda_layer.grad[0],
        "q": lyco.q_layer.weight.grad.abs().sum(1),
        "p": lyco.p_layer.weight.grad.abs().sum(0),
    }
    for name, g in grads.items():
        assert torch.all(g[ranks:] == 0), f"{name}: masked ranks {ranks}: got gradient"
        assert torch.all(g[:ranks] != 0), f"{name}: active ranks {ranks}: no gradient"
    spec.after_training()
    assert get_timestep_mask() is None


def test_flow_objective_calls_the_hook_with_sigma() -> None:
    """flow_matching_mse hands the hook the shifted σ it noises with, on a scale of 1 (a stand-in
    architecture: only the objective's own arithmetic runs)."""
    from t2ibench.bases.objectives import flow_matching_mse

    seen = []
    denoiser = SimpleNamespace(device=torch.device("cpu"))
    arch = SimpleNamespace(
        objective=SimpleNamespace(timestep_sampling="logit_normal"),
        denoiser_of=lambda pipe: denoiser,
        flow_shift=lambda sched, lat: 3.0,
        condition=lambda pipe, caps, dev: {},
        predict=lambda pipe, noisy, t, cond: (seen.append(t), noisy)[1],
    )
    sched = SimpleNamespace(config=SimpleNamespace(num_train_timesteps=1000))
    hook = []
    flow_matching_mse(
        arch, None, torch.zeros(3, 4, 2, 2), ["a"] * 3, torch.Generator().manual_seed(0), sched,
        before_predict=lambda t, m: hook.append((t.clone(), m)),
    )  # fmt: skip
    (sigma, max_t), (t_seen,) = hook[0], seen
    assert max_t == 1.0 and torch.all((sigma > 0) & (sigma < 1))
    assert torch.allclose(sigma * 1000, t_seen)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base, demo_dataset):
    """One epoch of lycoris-tlora on the tiny SD1.5 base, every mask the loop set recorded."""
    import lycoris.modules.tlora as tlora

    gc_was = tlora.gc
    tlora.gc = types.SimpleNamespace(collect=lambda *a: 0)
    masks = []
    real = tlora.set_timestep_mask
    tlora.set_timestep_mask = lambda mask, group_id=0: (masks.append(mask), real(mask, group_id))
    try:
        data = demo_dataset  # make_demo_dataset(size=64, seed=0)
        pipe = tiny_base()
        spec = get_trainer("lycoris-tlora")
        cfg = spec.config(
            [("test", {"resolution": 64, "batch_size": 4, "warmup_steps": 0, "lr": 2e-2,
                       "preset": "attn-only", "train_text_encoder": False, "dim": 8})]
        )  # fmt: skip
        out = tmp_path_factory.mktemp("tlora")
        result = train_run(
            "lycoris-tlora", data, "tiny", out, cfg, epochs=1, progress=False, pipe=pipe
        )
        left = tlora.get_timestep_mask()
    finally:
        tlora.set_timestep_mask = real
        tlora.gc = gc_was
    return SimpleNamespace(pipe=pipe, path=result.checkpoints[-1], masks=masks, left=left,
                           steps=result.steps)  # fmt: skip


def test_training_sets_a_mask_per_step_that_follows_the_timestep(trained) -> None:
    assert len(trained.masks) == trained.steps > 1
    ranks = {_active(m) for m in trained.masks}
    assert len(ranks) > 1, f"the mask never changed over {trained.steps} steps: {ranks}"
    assert all(m.shape == (1, 8) for m in trained.masks)
    assert trained.left is None  # generation after training: no mask, every rank


@pytest.mark.parametrize("t", [900, 100])
def test_trained_file_equals_lycoris_modules_at_a_mask(trained, t) -> None:
    """apply_adapter of the trained file vs lycoris-lora's create_lycoris_from_weights of the same
    file, layer by layer, with lycoris' mask for timestep ``t`` set; the mask changes outputs."""
    from lycoris import create_lycoris_from_weights
    from lycoris.modules.tlora import clear_timestep_mask, compute_timestep_mask, set_timestep_mask
    from methods_testutil import layer_input, lycoris_preset

    from t2ibench.adapters import apply_adapter

    unet = trained.pipe.unet
    with lycoris_preset({"lora_prefix": "lora_unet"}):
        net, _ = create_lycoris_from_weights(1.0, str(trained.path), unet)
    assert net.loras
    theirs = {lyco.org_module[0]: lyco for lyco in net.loras}
    set_timestep_mask(compute_timestep_mask(t, 1000, 8, 1))
    try:
        with apply_adapter(trained.pipe, trained.path) as handle, torch.no_grad():
            assert {m.org for m in handle.network} == set(theirs)
            moved = 0.0
            for layer, lyco in theirs.items():
                x = layer_input(layer)
                got, want = layer(x), lyco(x)
                assert torch.allclose(got, want, atol=1e-5, rtol=0), float((got - want).abs().max())
                clear_timestep_mask()
                moved = max(moved, float((layer(x) - got).abs().max()))
                set_timestep_mask(compute_timestep_mask(t, 1000, 8, 1))
    finally:
        clear_timestep_mask()
    assert moved > 1e-6, "the mask did not change any layer's output"
