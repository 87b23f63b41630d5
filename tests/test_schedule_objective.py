"""Log-SNR schedule, timestep sampling, the MiM-MU loss and the MI estimator's math."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from mimmu.baselines.esd import esd_target
from mimmu.errors import MimmuError
from mimmu.objective import mimmu_loss, squared_distance
from mimmu.schedule import TimestepSampler, delta_log_snr, log_snr


@pytest.fixture(scope="module")
def alphas_cumprod():
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return scheduler.alphas_cumprod


def test_log_snr_formula(alphas_cumprod):
    lam = log_snr(alphas_cumprod)
    abar = alphas_cumprod[10].double()
    assert lam[10].item() == pytest.approx(torch.log(abar / (1 - abar)).item())
    assert (lam[1:] < lam[:-1]).all()


def test_delta_log_snr_positive_and_telescopes(alphas_cumprod):
    delta = delta_log_snr(alphas_cumprod)
    lam = log_snr(alphas_cumprod)
    assert (delta > 0).all()
    assert delta[1:].sum().item() == pytest.approx((lam[0] - lam[-1]).item(), rel=1e-9)


@pytest.mark.parametrize("mode", ["log_snr", "uniform_weighted"])
def test_weighted_samples_estimate_the_sum(alphas_cumprod, mode):
    """E_q[ w(t) f(t) ] must equal sum_t delta_lambda_t f(t) for the MI integral to be unbiased."""
    sampler = TimestepSampler.build(alphas_cumprod, mode)
    delta = delta_log_snr(alphas_cumprod).float()
    f = torch.linspace(0.0, 1.0, len(delta)) ** 2
    exact = (delta * f).sum().item()
    expectation = (sampler.proposal * sampler.weights * f).sum().item()
    assert expectation == pytest.approx(exact, rel=1e-4)
    timesteps, weights = sampler.sample(200_000, torch.Generator().manual_seed(0))
    assert (weights * f[timesteps]).mean().item() == pytest.approx(exact, rel=0.03)


def test_uniform_sampling_has_unit_weights(alphas_cumprod):
    sampler = TimestepSampler.build(alphas_cumprod, "uniform")
    assert torch.all(sampler.weights == 1.0)
    assert sampler.proposal.sum().item() == pytest.approx(1.0)


def test_unknown_sampling_mode(alphas_cumprod):
    with pytest.raises(MimmuError, match="invalid timestep sampling 'cosine'"):
        TimestepSampler.build(alphas_cumprod, "cosine")


def test_mimmu_loss_matches_definition():
    generator = torch.Generator().manual_seed(0)
    concept = torch.randn(3, 4, 2, 2, generator=generator)
    anchor = torch.randn(3, 4, 2, 2, generator=generator)
    weights = torch.tensor([1.0, 2.0, 0.5])
    manual = sum(weights[i] * ((concept[i] - anchor[i]) ** 2).sum() for i in range(3)) / 3
    assert mimmu_loss(concept, anchor, weights).item() == pytest.approx(manual.item(), rel=1e-6)
    assert mimmu_loss(anchor, anchor, weights).item() == 0.0
    assert squared_distance(concept, anchor).shape == (3,)


def test_esd_target_with_eta_zero_is_unconditional():
    uncond = torch.ones(2, 4, 2, 2)
    cond = torch.full((2, 4, 2, 2), 3.0)
    assert torch.equal(esd_target(uncond, cond, 0.0), uncond)
    assert torch.equal(esd_target(uncond, cond, 1.0), torch.full((2, 4, 2, 2), -1.0))
