"""Encoders built without random draws load exactly the checkpoint; other threads still draw."""

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2ibench.encoders.init_skip import skipped_random_init


def test_zeros_in_this_thread_random_in_others_and_restored_after():
    original = torch.nn.init.kaiming_uniform_
    built: dict[str, torch.Tensor] = {}
    inside, go_on = threading.Event(), threading.Event()

    def other_thread():
        inside.wait(10)
        built["other"] = torch.nn.Linear(16, 16).weight.detach().clone()
        go_on.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with skipped_random_init():
        assert torch.nn.init.kaiming_uniform_ is not original  # patched while inside
        inside.set()
        go_on.wait(10)  # the other thread builds while this one is inside
        built["here"] = torch.nn.Linear(16, 16).weight.detach().clone()
        with skipped_random_init():  # nested: still skipping, restored only by the outer exit
            pass
        built["nested"] = torch.nn.Conv2d(3, 4, 3).weight.detach().clone()
    t.join()
    assert torch.nn.init.kaiming_uniform_ is original
    assert torch.count_nonzero(built["here"]) == 0 and torch.count_nonzero(built["nested"]) == 0
    assert torch.count_nonzero(built["other"]) == built["other"].numel()
    assert torch.count_nonzero(torch.nn.Linear(16, 16).weight) == 256  # draws again


@pytest.mark.parametrize("name, family", [("clip-l14", "clip"), ("convnextv2-l", "convnext")])
def test_loaded_weights_are_the_checkpoints_and_nothing_was_drawn(name, family, monkeypatch):
    """open_clip and timm load the tiny checkpoint strictly over the zeros: every tensor equal to
    the file's; the initialisers they call (counted) never ran; afterwards they draw again."""
    import importlib

    import timm.layers.weight_init
    import timm.models.convnext

    from t2ibench.encoders import get_encoder_spec
    from t2ibench.encoders.base import weights_source

    module = importlib.import_module(f"t2ibench.encoders.{family}")
    tiny = module.TINY_MODEL_CFG if family == "clip" else module.TINY_ARGS
    folder = Path(weights_source(get_encoder_spec(name), None, True, tiny, module.build_tiny, None))
    draws = []

    def counted(original):
        def init(tensor, *args, **kwargs):
            draws.append(tuple(tensor.shape))
            return original(tensor, *args, **kwargs)

        return init

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", counted(torch.nn.init.kaiming_uniform_))
    trunc = counted(timm.layers.weight_init.trunc_normal_)
    monkeypatch.setattr(timm.layers.weight_init, "trunc_normal_", trunc)
    monkeypatch.setattr(timm.models.convnext, "trunc_normal_", trunc)
    (file,) = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
    want = load_file(str(file))
    got = module.load_model(str(folder))[0].state_dict()
    assert draws == []
    assert set(want) <= set(got)
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key
    torch.nn.Linear(8, 8)
    timm.models.convnext.trunc_normal_(torch.empty(4))
    assert draws == [(8, 8), (4,)]
