"""The noise schedule in one parameterisation: log signal-to-noise ratio per timestep.

Symbols (Kong et al., "Information-Theoretic Diffusion", ICLR 2023):

    abar_t          alphas_cumprod[t] of the diffusers scheduler
    x_t             sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps        (scheduler.add_noise)
    lambda_t        log(abar_t / (1 - abar_t)), decreasing in t
    delta_lambda_t  lambda_{t-1} - lambda_t > 0, the width of timestep t on the lambda axis

Integrals over lambda become sums over timesteps weighted by delta_lambda_t. For t = 0,
whose lower neighbour lambda_{-1} is infinite, the forward difference lambda_0 - lambda_1
is used; the integrand is negligible there because the image is almost noise-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimmu.errors import MimmuError

TIMESTEP_SAMPLING = ("log_snr", "uniform_weighted", "uniform")


def log_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Return lambda_t = log(abar_t / (1 - abar_t)) for every timestep, shape (T,)."""
    alphas_cumprod = alphas_cumprod.double()
    return torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)


def delta_log_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Return delta_lambda_t = lambda_{t-1} - lambda_t, shape (T,), all positive."""
    lam = log_snr(alphas_cumprod)
    delta = torch.empty_like(lam)
    delta[1:] = lam[:-1] - lam[1:]
    delta[0] = lam[0] - lam[1]
    return delta


@dataclass(frozen=True)
class TimestepSampler:
    """Draws timestep indices t ~ q(t) and returns the Monte Carlo weight of each draw.

    "log_snr":          q(t) proportional to delta_lambda_t; weight delta_lambda_t / q(t) (constant)
    "uniform_weighted": q(t) = 1 / T; weight T * delta_lambda_t
    "uniform":          q(t) = 1 / T; weight 1 (the usual DDPM loss, not an MI estimate)
    """

    proposal: torch.Tensor  # q(t), shape (T,), sums to 1
    weights: torch.Tensor  # delta_lambda_t / q(t) (or 1), shape (T,)

    @classmethod
    def build(cls, alphas_cumprod: torch.Tensor, mode: str = "log_snr") -> TimestepSampler:
        """Return the sampler for `mode`, one of TIMESTEP_SAMPLING."""
        if mode not in TIMESTEP_SAMPLING:
            raise MimmuError(f"invalid timestep sampling {mode!r}; expected one of {', '.join(TIMESTEP_SAMPLING)}")
        # On the CPU whatever the model's device, so draws follow a CPU torch.Generator.
        delta = delta_log_snr(alphas_cumprod.detach().cpu())
        count = len(delta)
        if mode == "log_snr":
            proposal = delta / delta.sum()
            weights = delta / proposal
        else:
            proposal = torch.full((count,), 1.0 / count, dtype=torch.float64)
            weights = delta * count if mode == "uniform_weighted" else torch.ones(count, dtype=torch.float64)
        return cls(proposal.float(), weights.float())

    def sample(self, count: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `count` timestep indices (long) and their weights (float), each of shape (count,)."""
        timesteps = torch.multinomial(self.proposal, count, replacement=True, generator=generator)
        return timesteps, self.weights[timesteps]
