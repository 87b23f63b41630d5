"""Monte Carlo estimates of the mutual information between a prompt and the images.

Both forms follow Kong et al. (Information-Theoretic Diffusion, ICLR 2023; Interpretable
Diffusion via Information Decomposition, ICLR 2024), with the I-MMSE relation of Guo,
Shamai and Verdu (2005):

    standard:    i(x; c)   = 1/2 * integral d lambda  E_eps[ ||eps - eps_hat(x_t, t, a)||^2 - ||eps - eps_hat(x_t, t, c)||^2 ]
    orthogonal:  i_o(x; c) = 1/2 * integral d lambda  E_eps || eps_hat(x_t, t, c) - eps_hat(x_t, t, a) ||^2

where `a` is the anchor: the empty prompt for i(x; c), or the prompt with the concept
removed for the conditional information i(x; k | context). The integral over lambda is
a sum over timesteps weighted by delta_lambda_t (mimmu.schedule), estimated by drawing
t ~ q(t) and weighting each draw by delta_lambda_t / q(t). Units: nats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from diffusers import UNet2DConditionModel

from mimmu.devices import autocast
from mimmu.errors import MimmuError
from mimmu.objective import squared_distance
from mimmu.schedule import TimestepSampler

MI_FORMS = ("orthogonal", "standard")
MI_DRAWS = 4  # timestep and noise draws per image of the evaluation's and the trainer's estimates


@dataclass(frozen=True)
class MIEstimate:
    """A mutual-information estimate in nats, with its standard error over images."""

    value: float
    stderr: float
    num_images: int
    draws_per_image: int
    form: str

    def to_dict(self) -> dict:
        """Return the estimate as a JSON-ready dict."""
        return asdict(self)


@torch.no_grad()
def pointwise_mi(
    unet: UNet2DConditionModel,
    alphas_cumprod: torch.Tensor,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    anchor_embeds: torch.Tensor,
    draws_per_image: int = 8,
    form: str = "orthogonal",
    generator: torch.Generator | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Return the pointwise estimate i(x; c) of each image in nats, shape (N,).

    latents (N, C, H, W) are clean latents x_0 scaled as the UNet expects;
    prompt_embeds and anchor_embeds are (N, L, D) on the UNet's device.
    """
    if form not in MI_FORMS:
        raise MimmuError(f"invalid MI form {form!r}; expected one of {', '.join(MI_FORMS)}")
    if draws_per_image < 1:
        raise MimmuError(f"draws per image must be at least 1, got {draws_per_image}")
    sampler = TimestepSampler.build(alphas_cumprod, "log_snr")
    device, dtype = latents.device, unet.dtype
    alphas_cumprod = alphas_cumprod.to(device)

    # Repeat every image once per draw: (N * K, C, H, W); row n * K + k is draw k of image n.
    count = len(latents)
    latents = latents.repeat_interleave(draws_per_image, dim=0)
    prompt_embeds = prompt_embeds.repeat_interleave(draws_per_image, dim=0)
    anchor_embeds = anchor_embeds.repeat_interleave(draws_per_image, dim=0)
    timesteps, weights = sampler.sample(len(latents), generator)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device)

    values = []
    for start in range(0, len(latents), batch_size):
        end = start + batch_size
        t = timesteps[start:end].to(device)
        abar = alphas_cumprod[t].float().view(-1, 1, 1, 1)
        noisy_latents = (abar.sqrt() * latents[start:end].float() + (1 - abar).sqrt() * noise[start:end]).to(dtype)
        # Autocast covers a half-precision UNet whose trainable layers were kept in float32.
        with autocast(device, dtype):
            pred_concept = unet(noisy_latents, t, encoder_hidden_states=prompt_embeds[start:end].to(dtype)).sample
            pred_anchor = unet(noisy_latents, t, encoder_hidden_states=anchor_embeds[start:end].to(dtype)).sample
        if form == "orthogonal":
            integrand = squared_distance(pred_concept, pred_anchor)
        else:
            eps = noise[start:end]
            integrand = squared_distance(eps, pred_anchor) - squared_distance(eps, pred_concept)
        values.append(0.5 * weights[start:end].to(device) * integrand.float())
    return torch.cat(values).view(count, draws_per_image).mean(dim=1).cpu()


def rows_per_group(groups: list[str], count: int) -> list[int]:
    """Return row indices: the first max(count // G, 1) rows of each of the G groups, in group order.

    That is at most `count` rows, unless there are more groups than `count` (then one row each).

    An MI estimate over several erased concepts uses it, so that every concept gets its share.
    """
    names = list(dict.fromkeys(groups))
    if not names:
        return []
    share = max(count // len(names), 1)
    rows: list[int] = []
    for name in names:
        rows += [i for i, group in enumerate(groups) if group == name][:share]
    return rows


def summarize(pointwise: torch.Tensor, draws_per_image: int, form: str) -> MIEstimate:
    """Return the mean of pointwise estimates (N,) with its standard error over images."""
    count = len(pointwise)
    if count == 0:
        raise MimmuError("no images to estimate mutual information on; pass at least one sample")
    value = float(pointwise.double().mean())
    stderr = float(pointwise.double().std(unbiased=True) / math.sqrt(count)) if count > 1 else float("nan")
    return MIEstimate(value, stderr, count, draws_per_image, form)


def paired_ratio_stderr(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """Return the standard error of mean(numerator) / mean(denominator) over paired rows.

    numerator a and denominator b (N,) are pointwise estimates whose i-th entries share
    a prompt, a seed and the noise draws, such as an erased and a base model's. For the
    true ratio R = E[a] / E[b] and d_i = a_i - R b_i, a first-order expansion (the delta
    method) gives r_hat - R ~= mean(d) / mean(b), with r_hat = mean(a) / mean(b). With R
    estimated by r_hat:

        se(r_hat) ~= std(d) / (sqrt(N) |mean(b)|)

    This counts the correlation between the pairs instead of assuming independence. When
    the rows are stratified (an equal share per erased concept), std(d) also contains the
    differences between strata, so the error is then somewhat overstated.
    """
    if numerator.shape != denominator.shape or numerator.dim() != 1:
        raise MimmuError(
            f"invalid paired estimates of shapes {tuple(numerator.shape)} and {tuple(denominator.shape)}; "
            "pass two vectors of one length, the pointwise estimates of the same rows"
        )
    count = len(numerator)
    mean_denominator = float(denominator.double().mean()) if count else 0.0
    if count < 2 or mean_denominator == 0:
        return float("nan")
    ratio = float(numerator.double().mean()) / mean_denominator
    residuals = numerator.double() - ratio * denominator.double()
    return float(residuals.std(unbiased=True)) / (math.sqrt(count) * abs(mean_denominator))
