"""Architectures of the MiniCanvas VAE and UNet, and the schedulers used with them.

The shapes mirror Stable Diffusion at a smaller scale. Images are 32 x 32 RGB and
latents 8 x 8 x 4, because a VAE with three blocks downsamples by 4. The UNet
cross-attends to 384-dimensional MiniLM token states at 8 x 8 and 4 x 4.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel

from mimmu.text_encoder import EMBEDDING_DIM

LATENT_CHANNELS = 4
LATENT_SIZE = 8

# Stable Diffusion's training schedule ("scaled_linear", 1000 steps), unchanged.
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}


def build_vae() -> AutoencoderKL:
    """Return a freshly initialised MiniCanvas VAE."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=32,
    )


def build_unet() -> UNet2DConditionModel:
    """Return a freshly initialised MiniCanvas UNet."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 128, 128),
        layers_per_block=1,
        cross_attention_dim=EMBEDDING_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def build_training_scheduler() -> DDPMScheduler:
    """Return the DDPM noise schedule used to train the UNet."""
    return DDPMScheduler(**SCHEDULE)


def build_sampler() -> DPMSolverMultistepScheduler:
    """Return the default generation sampler: DPM-Solver++ on the training schedule."""
    return DPMSolverMultistepScheduler(**SCHEDULE, algorithm_type="dpmsolver++", solver_order=2, steps_offset=1)
