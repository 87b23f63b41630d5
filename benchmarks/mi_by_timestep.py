"""Split an erased model's remaining conditional MI by timestep band and by image source.

    .venv/bin/python benchmarks/mi_by_timestep.py --erased out/red --concept red

For the first 64 forgetting prompts of `mimmu evaluate`'s default evaluation set
(held-out templates, the same seeds), it estimates the orthogonal-form MI of the erased model, i_o(x; concept | context), on
three sets of clean latents:

- the erased model's own images of the prompts (what `mimmu evaluate` measures),
- the base model's images of the same prompts (the concept as the base draws it),
- the base model's images of the anchor prompts (what an erasure should leave).

The integral over log-SNR is a sum over a fixed grid of timesteps (every 25th) rather
than a Monte Carlo draw, so every band gets the same number of terms:

    i_o ~= 1/2 * sum over grid t of E_eps ||eps(x_t, t, c) - eps(x_t, t, a)||^2 * sum_{s=t}^{t+24} delta_lambda_s

Prints one JSON line per image source: the total in nats and its share per band.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mimmu.artifact import apply_weights, load_erased_weights
from mimmu.embeddings import embed_prompts
from mimmu.generate import GenerationRequest, generate_latents
from mimmu.loading import load_pipeline
from mimmu.objective import squared_distance
from mimmu.prompt_sets import build_evaluation_prompts
from mimmu.schedule import delta_log_snr

STRIDE = 25
BANDS = ((0, 100), (100, 300), (300, 600), (600, 1000))
EVALUATION_SIZE, EVALUATION_SEED = 128, 1000  # the defaults of mimmu.evaluation.evaluate_erased


@torch.no_grad()
def mi_by_band(unet, alphas_cumprod, latents, prompt_embeds, anchor_embeds, seed: int = 0) -> dict:
    """Return {"total": nats, "lo-hi": nats, ...} for latents (N, C, H, W) and embeddings (N, L, D)."""
    delta = delta_log_snr(alphas_cumprod).float()
    generator = torch.Generator().manual_seed(seed)
    grid = range(0, len(alphas_cumprod), STRIDE)
    terms = {}
    for t in grid:
        noise = torch.randn(latents.shape, generator=generator)
        abar = alphas_cumprod[t].float()
        noisy_latents = abar.sqrt() * latents + (1 - abar).sqrt() * noise
        timesteps = torch.full((len(latents),), t)
        pred_concept = unet(noisy_latents, timesteps, encoder_hidden_states=prompt_embeds).sample
        pred_anchor = unet(noisy_latents, timesteps, encoder_hidden_states=anchor_embeds).sample
        terms[t] = 0.5 * float(squared_distance(pred_concept, pred_anchor).mean()) * float(delta[t : t + STRIDE].sum())
    bands = {f"{lo}-{hi - 1}": round(sum(v for t, v in terms.items() if lo <= t < hi), 3) for lo, hi in BANDS}
    return {"total": round(sum(terms.values()), 3), **bands}


def _prompt_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= EVALUATION_SIZE:
        raise argparse.ArgumentTypeError(f"invalid prompt count {count}; pass 1 to {EVALUATION_SIZE}")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--erased", required=True, help="erased-model folder written by `mimmu erase`")
    parser.add_argument("--concept", required=True, help="the erased concept to measure")
    parser.add_argument("--model", default="minicanvas", help="base model (default minicanvas)")
    parser.add_argument(
        "--num-prompts",
        type=_prompt_count,
        default=64,
        metavar="N",
        help=f"forgetting prompts to measure, 1 to {EVALUATION_SIZE} (default 64)",
    )
    args = parser.parse_args()

    pipeline = load_pipeline(args.model, device="cpu")
    rng = np.random.default_rng(EVALUATION_SEED)
    evaluation = build_evaluation_prompts([args.concept], EVALUATION_SIZE, rng)
    forgetting = [e for e in evaluation if e.kind == "forgetting"][: args.num_prompts]
    prompts, anchors = [e.prompt for e in forgetting], [e.anchor for e in forgetting]
    seeds = [EVALUATION_SEED + index for index in range(len(prompts))]
    base_images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False)
    anchor_images = generate_latents(pipeline, GenerationRequest(anchors, seeds), progress=False)
    prompt_embeds, anchor_embeds = embed_prompts(pipeline, prompts), embed_prompts(pipeline, anchors)

    _, weights = load_erased_weights(args.erased)
    apply_weights(pipeline, weights)
    erased_images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False)
    alphas_cumprod = pipeline.scheduler.alphas_cumprod
    sources = {"erased model's images": erased_images, "base images": base_images, "base anchor images": anchor_images}
    for name, latents in sources.items():
        row = mi_by_band(pipeline.unet, alphas_cumprod, latents.float(), prompt_embeds, anchor_embeds)
        print(json.dumps({"images": name, **row}))


if __name__ == "__main__":
    main()
