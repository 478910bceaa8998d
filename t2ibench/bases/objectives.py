"""The training objectives a base declares (:class:`t2ibench.architectures.Objective`).

* ``diffusion_mse``: DDPM noise-prediction error (epsilon, or v when the scheduler predicts v) —
  kohya sd-scripts' ``train_network.py`` loss on SD1.5 / SDXL.
* ``flow_matching_mse``: rectified-flow velocity error, ``x_t = (1-σ)·x + σ·ε``, target ``ε − x``,
  σ uniform or logit-normal (SD3 paper, Esser et al. 2024, §3.1 "logit-normal sampling") and moved
  by the base's shift ``σ' = s·σ / (1 + (s−1)·σ)`` (diffusers ``FlowMatchEulerDiscreteScheduler``,
  ``shift``; ``BaseArchitecture.flow_shift``: FLUX.1's depends on the image size, as its sampler's);
  the denoiser sees ``t = 1000·σ'``.

``before_predict(timesteps, max_timestep)``, when given, is called with the noise levels drawn
for the batch just before the denoiser runs (a trainer's per-step hook, e.g. T-LoRA's rank mask):
DDPM timesteps in ``[0, num_train_timesteps)`` with ``max_timestep = num_train_timesteps``, or
flow matching's shifted σ in ``[0, 1]`` with ``max_timestep = 1``.

Randomness only from the generator passed in, drawn in a fixed order (noise, then timesteps), so
a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by ``import t2ibench`` (the bases package): torch only when used
    import torch


def diffusion_mse(
    arch: Any,
    pipe: Any,
    latents: torch.Tensor,
    captions: Sequence[str],
    gen: torch.Generator,
    scheduler: Any,
    *,
    autocast: Any = None,
    before_predict: Any = None,
) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    device = arch.denoiser_of(pipe).device
    latents = latents.to(device)
    noise = torch.randn(latents.shape, generator=gen).to(device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    t = t.to(device)
    if before_predict is not None:
        before_predict(t, int(scheduler.config.num_train_timesteps))
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    with ctx:
        cond = arch.condition(pipe, captions, device)
        noisy = scheduler.add_noise(latents, noise, t)
        pred = arch.predict(pipe, noisy, t, cond)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The timestep shift of SD3 / FLUX schedulers applied to σ ∈ [0, 1]."""
    return shift * u / (1 + (shift - 1) * u)


def flow_matching_mse(
    arch: Any,
    pipe: Any,
    latents: torch.Tensor,
    captions: Sequence[str],
    gen: torch.Generator,
    scheduler: Any,
    *,
    autocast: Any = None,
    before_predict: Any = None,
) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    objective = arch.objective
    device = arch.denoiser_of(pipe).device
    latents = latents.to(device)
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=gen).to(device)
    if objective.timestep_sampling == "logit_normal":
        u = torch.sigmoid(torch.randn(b, generator=gen))
    else:
        u = torch.rand(b, generator=gen)
    sigma = shifted_sigmas(u, arch.flow_shift(scheduler, latents)).to(device)
    s = sigma.view(b, *([1] * (latents.ndim - 1)))
    noisy = (1 - s) * latents + s * noise
    num = int(getattr(scheduler.config, "num_train_timesteps", 1000))
    if before_predict is not None:
        before_predict(sigma, 1.0)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    with ctx:
        cond = arch.condition(pipe, captions, device)
        pred = arch.predict(pipe, noisy, sigma * num, cond)
    return F.mse_loss(pred.float(), (noise - latents).float())
