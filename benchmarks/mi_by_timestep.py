"""Split an erased model's remaining conditional MI by timestep band and by image source.

    .venv/bin/python benchmarks/mi_by_timestep.py --erased out/red --concept red
    .venv/bin/python benchmarks/mi_by_timestep.py --erased out/star --concept star --prompts retained --decompose

It takes the first 64 prompts of one kind (forgetting or retained) from `mimmu evaluate`'s
default evaluation set (held-out templates, the same seeds), with their anchors: the
prompt without the concept it names. By default it estimates the orthogonal-form MI of
the erased model, i_o(x; concept | context), on three sets of clean latents:

- the erased model's own images of the prompts (what `mimmu evaluate` measures),
- the base model's images of the same prompts (the concept as the base draws it),
- the base model's images of the anchor prompts (what an erasure should leave).

With --decompose it measures, on the erased model's own images only, how far each
prediction moved. Every row is the same weighted sum with another pair of predictions
(e = erased model, b = base model, c = prompt, a = anchor):

- e(c) vs e(a): the erased model's MI (the first row of the default mode),
- b(c) vs b(a): the base model's MI on the same images,
- e(c) vs b(c): how far the erasure moved the prompt's prediction,
- e(a) vs b(a): how far it moved the anchor's prediction,
- e(c) vs b(a): MiM-MU's training objective (prompt against the frozen anchor).

The integral over log-SNR is a sum over a fixed grid of timesteps (every 25th) rather
than a Monte Carlo draw, so every band gets the same number of terms:

    sum ~= 1/2 * sum over grid t of E_eps ||eps_1(x_t, t) - eps_2(x_t, t)||^2 * sum_{s=t}^{t+24} delta_lambda_s

Prints one JSON line per row: the total in nats, its standard error over images, and the part of it
in each timestep band.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from mimmu.artifact import apply_weights, check_base, load_erased_weights, model_digest
from mimmu.embeddings import embed_prompts
from mimmu.errors import MimmuError
from mimmu.generate import GenerationRequest, generate_latents
from mimmu.loading import load_pipeline
from mimmu.objective import squared_distance
from mimmu.prompt_sets import build_evaluation_prompts
from mimmu.schedule import delta_log_snr

STRIDE = 25
BANDS = ((0, 100), (100, 300), (300, 600), (600, 1000))
EVALUATION_SIZE, EVALUATION_SEED = 128, 1000  # the defaults of mimmu.evaluation.evaluate_erased
# Rows of --decompose: label -> the two predictions compared, as (model, prompt) pairs.
DECOMPOSITION = {
    "e(c) vs e(a), erased MI": (("erased", "prompt"), ("erased", "anchor")),
    "b(c) vs b(a), base MI": (("base", "prompt"), ("base", "anchor")),
    "e(c) vs b(c), prompt moved": (("erased", "prompt"), ("base", "prompt")),
    "e(a) vs b(a), anchor moved": (("erased", "anchor"), ("base", "anchor")),
    "e(c) vs b(a), training objective": (("erased", "prompt"), ("base", "anchor")),
}


@torch.no_grad()
def distances_by_band(unets: dict, alphas_cumprod, latents, embeds: dict, pairs: dict, seed: int = 0) -> dict:
    """Return {label: {"total": nats, "stderr": nats, "lo-hi": nats, ...}} for each pair of predictions.

    `unets` maps a model name to a UNet and `embeds` a prompt name to embeddings (N, L, D).
    `pairs` maps a label to ((model, prompt), (model, prompt)). `latents` are clean latents
    (N, C, H, W). Every pair sees the same noise and timesteps. "total" and the bands are
    means over the N images, and "stderr" is the standard error of the total over images
    (None for one image). It leaves out the error of the fixed timestep grid.
    """
    delta = delta_log_snr(alphas_cumprod).float()
    generator = torch.Generator().manual_seed(seed)
    needed = {key for pair in pairs.values() for key in pair}
    terms = {label: {} for label in pairs}
    for t in range(0, len(alphas_cumprod), STRIDE):
        noise = torch.randn(latents.shape, generator=generator)
        abar = alphas_cumprod[t].float()
        noisy_latents = abar.sqrt() * latents + (1 - abar).sqrt() * noise
        timesteps = torch.full((len(latents),), t)
        preds = {
            (model, prompt): unets[model](noisy_latents, timesteps, encoder_hidden_states=embeds[prompt]).sample
            for model, prompt in needed
        }
        weight = 0.5 * float(delta[t : t + STRIDE].sum())
        for label, (first, second) in pairs.items():
            terms[label][t] = weight * squared_distance(preds[first], preds[second]).double()  # (N,)
    rows = {}
    for label, by_t in terms.items():
        per_image = sum(by_t.values())
        stderr = float(per_image.std(unbiased=True)) / math.sqrt(len(per_image)) if len(per_image) > 1 else None
        bands = {
            f"{lo}-{hi - 1}": round(float(sum(v for t, v in by_t.items() if lo <= t < hi).mean()), 3)
            for lo, hi in BANDS
        }
        rows[label] = {
            "total": round(float(per_image.mean()), 3),
            "stderr": None if stderr is None else round(stderr, 3),
            **bands,
        }
    return rows


def load_erased_on_base(model: str, erased: Path):
    """Return the base pipeline (on the CPU), and the record and weights of an erased folder made from it.

    Raises MimmuError when the folder is not an erased model, its weights are corrupted, or
    it was made from another base model.
    """
    pipeline = load_pipeline(model, device="cpu")
    record, weights = load_erased_weights(erased)
    check_base(record, model_digest(model), model)
    return pipeline, record, weights


def prompt_count(text: str) -> int:
    """Parse --num-prompts: an integer from 1 to EVALUATION_SIZE."""
    count = int(text)
    if not 1 <= count <= EVALUATION_SIZE:
        raise argparse.ArgumentTypeError(f"invalid prompt count {count}; pass 1 to {EVALUATION_SIZE}")
    return count


def add_model_arguments(parser: argparse.ArgumentParser, num_prompts_help: str) -> None:
    """Add --erased, --concept, --model and --num-prompts, which both MI diagnostics take."""
    parser.add_argument("--erased", required=True, type=Path, help="erased-model folder written by `mimmu erase`")
    parser.add_argument("--concept", required=True, help="the erased concept to measure")
    parser.add_argument("--model", default="minicanvas", help="base model (default minicanvas)")
    parser.add_argument(
        "--num-prompts",
        type=prompt_count,
        default=64,
        metavar="N",
        help=f"{num_prompts_help}, 1 to {EVALUATION_SIZE} (default 64)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, "prompts to measure")
    parser.add_argument(
        "--prompts",
        choices=("forgetting", "retained"),
        default="forgetting",
        help="measure the concept's forgetting prompts, or the retained prompts about the other values of "
        "its attribute (default forgetting)",
    )
    parser.add_argument(
        "--decompose",
        action="store_true",
        help="on the erased model's own images, split the change into prompt and anchor predictions",
    )
    args = parser.parse_args()
    try:
        pipeline, _, weights = load_erased_on_base(args.model, args.erased)
    except MimmuError as error:
        sys.exit(f"error: {error}")

    rng = np.random.default_rng(EVALUATION_SEED)
    evaluation = build_evaluation_prompts([args.concept], EVALUATION_SIZE, rng)
    chosen = [e for e in evaluation if e.kind == args.prompts][: args.num_prompts]
    prompts, anchors = [e.prompt for e in chosen], [e.anchor for e in chosen]
    seeds = [EVALUATION_SEED + index for index in range(len(prompts))]
    embeds = {"prompt": embed_prompts(pipeline, prompts), "anchor": embed_prompts(pipeline, anchors)}
    alphas_cumprod = pipeline.scheduler.alphas_cumprod

    if args.decompose:
        base_unet = copy.deepcopy(pipeline.unet)
        apply_weights(pipeline, weights)
        erased_images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False)
        unets = {"erased": pipeline.unet, "base": base_unet}
        rows = distances_by_band(unets, alphas_cumprod, erased_images.float(), embeds, DECOMPOSITION)
        for label, row in rows.items():
            print(json.dumps({"prompts": args.prompts, "pair": label, **row}))
        return

    base_images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False)
    anchor_images = generate_latents(pipeline, GenerationRequest(anchors, seeds), progress=False)
    apply_weights(pipeline, weights)
    erased_images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False)
    pair = {"mi": (("erased", "prompt"), ("erased", "anchor"))}
    sources = {"erased model's images": erased_images, "base images": base_images, "base anchor images": anchor_images}
    for name, latents in sources.items():
        row = distances_by_band({"erased": pipeline.unet}, alphas_cumprod, latents.float(), embeds, pair)["mi"]
        print(json.dumps({"prompts": args.prompts, "images": name, **row}))


if __name__ == "__main__":
    main()
