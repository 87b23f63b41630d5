"""UCE: Unified Concept Editing in Diffusion Models (Gandikota et al., WACV 2024).

A closed-form edit of every cross-attention key and value projection W (out, D). With
c_i the token states of the concepts to erase, c*_i those of their anchors, and c_j
those of concepts to preserve, the edited weight minimises

    sum_i ||W' c_i - W c*_i||^2 + sum_j ||W' c_j - W c_j||^2 + lambda ||W' - W||_F^2

whose solution is

    W' = ( sum_i W c*_i c_i^T + sum_j W c_j c_j^T + lambda W ) ( sum_i c_i c_i^T + sum_j c_j c_j^T + lambda I )^-1

Preserving other concepts' outputs is UCE's compensation term; MiM-MU has none.
"""

from __future__ import annotations

import time

import torch
from diffusers import DiffusionPipeline

from mimmu.embeddings import embed_prompts
from mimmu.trainable import cross_attention_linears


def _token_states(embeds: torch.Tensor) -> torch.Tensor:
    """Flatten prompt embeddings (N, L, D) into token states (N * L, D) in float64."""
    return embeds.reshape(-1, embeds.shape[-1]).double().cpu()


@torch.no_grad()
def uce_edit(
    pipeline: DiffusionPipeline,
    erase_prompts: list[str],
    anchor_prompts: list[str],
    preserve_prompts: list[str],
    ridge: float,
) -> tuple[dict[str, torch.Tensor], float]:
    """Edit to_k and to_v of every cross-attention block in place; return changed weights and seconds."""
    started = time.perf_counter()
    concept = _token_states(embed_prompts(pipeline, erase_prompts))  # c_i, (n_e * L, D)
    anchor = _token_states(embed_prompts(pipeline, anchor_prompts))  # c*_i, aligned by position
    preserve = _token_states(embed_prompts(pipeline, preserve_prompts)) if preserve_prompts else concept[:0]
    dim = concept.shape[1]
    # Right factor: sum c c^T over erased and preserved tokens, plus lambda I; (D, D).
    gram = concept.T @ concept + preserve.T @ preserve + ridge * torch.eye(dim, dtype=torch.float64)
    changed = {}
    for name, layer in cross_attention_linears(pipeline.unet).items():
        weight = layer.weight.double().cpu()  # (out, D)
        left = weight @ anchor.T @ concept + weight @ preserve.T @ preserve + ridge * weight
        edited = torch.linalg.solve(gram, left.T).T.to(layer.weight.dtype)  # left @ gram^-1; gram is symmetric
        layer.weight.copy_(edited.to(layer.weight.device))
        changed[f"{name}.weight"] = edited.float().contiguous()
    return changed, time.perf_counter() - started
