"""Seeded image generation: every image has its own noise generator.

Image j of a request uses the generator seeded with `seed + j`, whatever the batch it
lands in, so a base and an erased model produce paired images for the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from tqdm.auto import tqdm

from mimmu.errors import MimmuError
from mimmu.loading import sampling_defaults


@dataclass(frozen=True)
class GenerationRequest:
    """Prompts (one per image), their seeds and the sampler settings."""

    prompts: list[str]
    seeds: list[int]
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.seeds):
            raise MimmuError(f"got {len(self.prompts)} prompts but {len(self.seeds)} seeds; pass one seed per prompt")
        if self.batch_size < 1:
            raise MimmuError(f"batch size must be at least 1, got {self.batch_size}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise MimmuError(f"steps must be at least 1, got {self.num_inference_steps}")
        if self.guidance_scale is not None and not np.isfinite(self.guidance_scale):
            raise MimmuError(f"guidance scale must be a finite number, got {self.guidance_scale}")


def generate_latents(
    pipeline: DiffusionPipeline,
    request: GenerationRequest,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    description: str = "generate",
) -> torch.Tensor:
    """Sample one clean latent x_0 per (prompt, seed); returns (N, C, h, w) in the UNet's latent space.

    `callback(done, total)` is called after every batch.
    """
    defaults = sampling_defaults(pipeline)
    steps = request.num_inference_steps or defaults.num_inference_steps
    guidance = defaults.guidance_scale if request.guidance_scale is None else request.guidance_scale
    device = pipeline.device
    total = len(request.prompts)
    batches = []
    with tqdm(total=total, desc=description, unit="img", disable=not progress) as bar:
        for start in range(0, total, request.batch_size):
            prompts = request.prompts[start : start + request.batch_size]
            seeds = request.seeds[start : start + request.batch_size]
            generators = [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]
            output = pipeline(
                prompt=prompts,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators,
                output_type="latent",
            )
            batches.append(output.images)
            bar.update(len(prompts))
            if callback is not None:
                callback(min(start + len(prompts), total), total)
    if not batches:
        raise MimmuError("nothing to generate; pass at least one prompt")
    return torch.cat(batches)


@torch.no_grad()
def decode_latents(pipeline: DiffusionPipeline, latents: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Decode latents (N, C, h, w) with the pipeline's VAE; returns float32 (N, H, W, 3) in [0, 1]."""
    vae = pipeline.vae
    images = []
    for start in range(0, len(latents), batch_size):
        batch = latents[start : start + batch_size].to(pipeline.device, vae.dtype)
        decoded = vae.decode(batch / vae.config.scaling_factor).sample  # (B, 3, H, W) in [-1, 1]
        images.append(((decoded.float() / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(images).astype(np.float32)


def generate(
    pipeline: DiffusionPipeline,
    request: GenerationRequest,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Generate one image per (prompt, seed); returns float32 (N, H, W, 3) in [0, 1]."""
    latents = generate_latents(pipeline, request, progress, callback)
    return decode_latents(pipeline, latents, request.batch_size)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Convert float images in [0, 1] to uint8 with rounding."""
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def make_grid(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W, 3) into one image with `columns` per row."""
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid
