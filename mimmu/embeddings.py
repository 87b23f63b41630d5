"""Prompt embeddings through a pipeline's own frozen text encoder."""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline


@torch.no_grad()
def embed_prompts(pipeline: DiffusionPipeline, prompts: list[str], batch_size: int = 128) -> torch.Tensor:
    """Return prompt embeddings (len(prompts), L, D) exactly as the pipeline computes them for sampling."""
    chunks = []
    for start in range(0, len(prompts), batch_size):
        prompt_embeds, _ = pipeline.encode_prompt(
            prompts[start : start + batch_size], pipeline.device, 1, do_classifier_free_guidance=False
        )
        chunks.append(prompt_embeds)
    return torch.cat(chunks)
