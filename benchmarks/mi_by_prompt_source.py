"""Split an erased model's remaining conditional MI by where its prompts come from and which token states carry it.

    .venv/bin/python benchmarks/mi_by_prompt_source.py --erased out/red --concept red

It answers two questions about the MI that `mimmu evaluate` still finds after an erasure.

Does the edit generalise beyond its training prompts? The same estimate runs on three
prompt sets of N prompts each, every one on the erased model's own images of those
prompts (seeds 1000 + i, as in `mimmu evaluate`):

- forgetting-set prompts: the captions the erasure trained on (from the erased folder's
  prompt_set.json), at seeds it never saw,
- fresh training-template captions: other captions from the same MiniCanvas training
  templates that name the concept, none of them in the forgetting set,
- held-out prompts: the first N evaluation prompts of `mimmu evaluate`.

Which token states carry the remainder? MiniLM's prompt embeddings are laid out as
[CLS], the word pieces, [SEP] and padding up to 24 positions. The encoder mixes the
whole sentence into every position, so [CLS], [SEP] and the padding states of "a red
star" differ from those of "a star". The second row of each set replaces those states
of the prompt with the anchor's (aligned from the end of the sentence) and measures
again: what is left is carried by the word pieces.

The integral over log-SNR is the fixed grid of `mi_by_timestep.py` (every 25th timestep).
Prints one JSON line per row: the total in nats and the part in each timestep band.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from mi_by_timestep import EVALUATION_SEED, EVALUATION_SIZE, add_model_arguments, distances_by_band

from mimmu.artifact import apply_weights, load_erased_weights
from mimmu.concepts import contains_concept, normalize_concept, remove_concept
from mimmu.embeddings import embed_prompts
from mimmu.errors import MimmuError
from mimmu.generate import GenerationRequest, generate_latents
from mimmu.loading import load_pipeline
from mimmu.prompt_sets import build_evaluation_prompts, vocabulary_prompts
from mimmu.text_encoder import count_tokens

FRESH_SEED = 5  # seed of the draw of other training-template captions


def special_states_from_anchor(
    prompt_embeds: torch.Tensor, anchor_embeds: torch.Tensor, prompt_lengths: list[int], anchor_lengths: list[int]
) -> torch.Tensor:
    """Return the prompt embeddings (N, L, D) with [CLS], [SEP] and padding states taken from the anchor's.

    `prompt_lengths` and `anchor_lengths` count tokens with [CLS] and [SEP]. A prompt of n
    tokens has [SEP] at n - 1 and padding from n on. The anchor's [SEP] is at its own
    m - 1, and its states from n on are padding too, since m < n.
    """
    swapped = prompt_embeds.clone()
    for row, (n, m) in enumerate(zip(prompt_lengths, anchor_lengths, strict=True)):
        swapped[row, 0] = anchor_embeds[row, 0]
        swapped[row, n - 1] = anchor_embeds[row, m - 1]
        swapped[row, n:] = anchor_embeds[row, n:]
    return swapped


def prompt_sources(erased: Path, concept: str, count: int) -> dict[str, list[str]]:
    """Return the three prompt sets by name, `count` prompts each (fewer if the forgetting set is smaller)."""
    path = erased / "prompt_set.json"
    if not path.is_file():
        raise MimmuError(f"{path} is missing; pass a folder written by `mimmu erase`")
    trained = [p["prompt"] for p in json.loads(path.read_text())["forgetting"] if p["concept"] == concept]
    if not trained:
        raise MimmuError(f"the erasure in {erased} trained on no prompt naming {concept!r}; pass the concept it erased")
    unseen = sorted(set(p for p in vocabulary_prompts() if contains_concept(p, concept)) - set(trained))
    rng = np.random.default_rng(FRESH_SEED)
    fresh = [unseen[int(i)] for i in rng.choice(len(unseen), size=min(count, len(unseen)), replace=False)]
    evaluation = build_evaluation_prompts([concept], EVALUATION_SIZE, np.random.default_rng(EVALUATION_SEED))
    held_out = [e.prompt for e in evaluation if e.kind == "forgetting"][:count]
    return {"forgetting-set prompts": trained[:count], "fresh training-template captions": fresh, "held-out": held_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, "prompts per set")
    args = parser.parse_args()
    try:
        concept = normalize_concept(args.concept)
        sources = prompt_sources(args.erased, concept, args.num_prompts)
    except MimmuError as error:
        sys.exit(f"error: {error}")

    pipeline = load_pipeline(args.model, device="cpu")
    _, weights = load_erased_weights(args.erased)
    apply_weights(pipeline, weights)
    pairs = {
        "as encoded": (("erased", "prompt"), ("erased", "anchor")),
        "[CLS], [SEP], padding from the anchor": (("erased", "swapped"), ("erased", "anchor")),
    }
    for source, prompts in sources.items():
        anchors = [remove_concept(p, concept) for p in prompts]
        seeds = [EVALUATION_SEED + index for index in range(len(prompts))]
        images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False).float()
        embeds = {"prompt": embed_prompts(pipeline, prompts), "anchor": embed_prompts(pipeline, anchors)}
        embeds["swapped"] = special_states_from_anchor(
            embeds["prompt"],
            embeds["anchor"],
            [count_tokens(pipeline.tokenizer, p) for p in prompts],
            [count_tokens(pipeline.tokenizer, a) for a in anchors],
        )
        rows = distances_by_band({"erased": pipeline.unet}, pipeline.scheduler.alphas_cumprod, images, embeds, pairs)
        for label, row in rows.items():
            print(json.dumps({"prompts": source, "token states": label, "count": len(prompts), **row}))


if __name__ == "__main__":
    main()
