"""Split an erased model's remaining conditional MI by where its prompts come from and which token states carry it.

    .venv/bin/python benchmarks/mi_by_prompt_source.py --erased out/red --concept red

It answers three questions about the MI that `mimmu evaluate` still finds after an erasure.

Does the edit generalise beyond its training prompts? The same estimate runs on three
prompt sets of N prompts each, every one on the erased model's own images of those
prompts (seeds 1000 + i, as in `mimmu evaluate`):

- trained captions, new seeds: the captions the erasure trained on (from the erased
  folder's prompt_set.json), at seeds it never saw,
- other training-template captions: other captions from the same MiniCanvas training
  templates that name the concept, none of them in the forgetting set,
- held-out prompts: the first N evaluation prompts of `mimmu evaluate`.

Which token states carry the remainder? MiniLM's prompt embeddings are laid out as
[CLS], the word pieces, [SEP] and padding up to 24 positions. The encoder mixes the
whole sentence into every position, so [CLS], [SEP] and the padding states of "a red
star" differ from those of "a star". The second row of each set gives the prompt the
anchor's [CLS], the anchor's [SEP] in place of its own, and the anchor's states at
its padding positions, and measures again: what is left is carried by the word pieces.

How much of that difference can the edit reach? With anchor preservation, updates of
to_k and to_v cannot act along the principal directions of the forgetting set's anchor
states (and the empty prompt's), at the share the erasure used. The third line of each
set gives the share of the energy of the prompt-minus-anchor differences at [CLS],
[SEP] and padding that lies along those protected directions.

The MI integral over log-SNR is the fixed grid of `mi_by_timestep.py` (every 25th
timestep). Prints one JSON line per row: the total in nats, its standard error over
images, and the part in each timestep band.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from mi_by_timestep import (
    EVALUATION_SEED,
    EVALUATION_SIZE,
    add_model_arguments,
    distances_by_band,
    load_erased_on_base,
)

from mimmu.artifact import apply_weights
from mimmu.concepts import contains_concept, normalize_concept, remove_concept
from mimmu.embeddings import embed_prompts
from mimmu.errors import MimmuError
from mimmu.generate import GenerationRequest, generate_latents
from mimmu.prompt_sets import ForgettingPrompt, build_evaluation_prompts, vocabulary_prompts
from mimmu.text_encoder import count_tokens
from mimmu.trainable import preservation_projector
from mimmu.trainer import preserved_anchor_rows

FRESH_SEED = 5  # seed of the draw of other training-template captions


def special_states_from_anchor(
    prompt_embeds: torch.Tensor, anchor_embeds: torch.Tensor, prompt_lengths: list[int], anchor_lengths: list[int]
) -> torch.Tensor:
    """Return the prompt embeddings (N, L, D) with [CLS], [SEP] and padding states taken from the anchor's.

    `prompt_lengths` and `anchor_lengths` count tokens with [CLS] and [SEP]. A prompt of n
    tokens has [SEP] at n - 1 and padding from n on. It gets the anchor's [SEP] (at the
    anchor's own m - 1) and the anchor's states at positions n and after, which are
    padding too, since m <= n.
    """
    swapped = prompt_embeds.clone()
    length = prompt_embeds.shape[1]
    for row, (n, m) in enumerate(zip(prompt_lengths, anchor_lengths, strict=True)):
        if not 2 <= m <= n <= length:
            raise MimmuError(
                f"invalid token counts in row {row}: prompt {n}, anchor {m}, expected 2 <= anchor <= prompt "
                f"<= {length}; pass prompts that contain the concept and fit the encoder"
            )
        swapped[row, 0] = anchor_embeds[row, 0]
        swapped[row, n - 1] = anchor_embeds[row, m - 1]
        swapped[row, n:] = anchor_embeds[row, n:]
    return swapped


def special_differences(prompt_embeds: torch.Tensor, swapped: torch.Tensor, prompt_lengths: list[int]) -> torch.Tensor:
    """Return the prompt-minus-anchor states at [CLS], [SEP] and padding, stacked as (rows, D).

    `swapped` is the output of special_states_from_anchor for the same prompts.
    """
    rows = []
    for row, n in enumerate(prompt_lengths):
        positions = [0, n - 1, *range(n, prompt_embeds.shape[1])]
        rows.append(prompt_embeds[row, positions] - swapped[row, positions])
    return torch.cat(rows)


def protected_share(differences: torch.Tensor, projector: torch.Tensor) -> float:
    """Return the share of the energy of `differences` (rows, D) outside the range of `projector` (D, D)."""
    differences = differences.double()
    free = differences @ projector.double()
    return 1.0 - float(free.pow(2).sum() / differences.pow(2).sum())


def read_forgetting(erased: Path) -> list[dict]:
    """Return the forgetting prompts of an erased folder: dicts with "prompt", "anchor" and "concept"."""
    path = erased / "prompt_set.json"
    try:
        forgetting = json.loads(path.read_text())["forgetting"]
        return [{"prompt": p["prompt"], "anchor": p["anchor"], "concept": p["concept"]} for p in forgetting]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MimmuError(
            f"forgetting prompts in {path} are missing or invalid ({error!r}); pass a folder written by `mimmu erase`"
        ) from error


def prompt_sources(forgetting: list[dict], concept: str, count: int) -> dict[str, list[str]]:
    """Return the three prompt sets by name, `count` prompts each (fewer if the forgetting set is smaller)."""
    trained = [p["prompt"] for p in forgetting if p["concept"] == concept]
    if not trained:
        erased = ", ".join(sorted({p["concept"] for p in forgetting}))
        raise MimmuError(
            f"concept {concept!r} not found in the forgetting prompts, which name {erased}; pass one of those"
        )
    unseen = sorted(set(p for p in vocabulary_prompts() if contains_concept(p, concept)) - set(trained))
    rng = np.random.default_rng(FRESH_SEED)
    fresh = [unseen[int(i)] for i in rng.choice(len(unseen), size=min(count, len(unseen)), replace=False)]
    evaluation = build_evaluation_prompts([concept], EVALUATION_SIZE, np.random.default_rng(EVALUATION_SEED))
    held_out = [e.prompt for e in evaluation if e.kind == "forgetting"][:count]
    return {
        "trained captions, new seeds": trained[:count],
        "other training-template captions": fresh,
        "held-out prompts": held_out,
    }


def protection_projector(pipeline, forgetting: list[dict], config: dict) -> torch.Tensor | None:
    """Return the projector onto the directions the erasure's updates could use, or None when nothing was preserved.

    The trainer's own projection (mimmu.trainer), rebuilt from the erased folder's
    prompt set and configuration.
    """
    prompts = [ForgettingPrompt(**p) for p in forgetting]
    rows = preserved_anchor_rows(prompts)
    anchor_states = embed_prompts(pipeline, [prompts[i].anchor for i in rows]).flatten(0, 1)
    null_states = embed_prompts(pipeline, [""]).flatten(0, 1)
    return preservation_projector(
        null_states, anchor_states, bool(config.get("preserve_null")), config.get("preserve_anchors") or 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, "prompts per set")
    args = parser.parse_args()
    try:
        concept = normalize_concept(args.concept)
        forgetting = read_forgetting(args.erased)
        sources = prompt_sources(forgetting, concept, args.num_prompts)
        pipeline, record, weights = load_erased_on_base(args.model, args.erased)
        projector = protection_projector(pipeline, forgetting, record["config"])
    except MimmuError as error:
        sys.exit(f"error: {error}")

    pairs = {
        "as encoded": (("erased", "prompt"), ("erased", "anchor")),
        "[CLS], [SEP], padding from the anchor": (("erased", "swapped"), ("erased", "anchor")),
    }
    embeds_by_source = {}
    for source, prompts in sources.items():
        anchors = [remove_concept(p, concept) for p in prompts]
        lengths = [count_tokens(pipeline.tokenizer, p) for p in prompts]
        anchor_lengths = [count_tokens(pipeline.tokenizer, a) for a in anchors]
        embeds = {"prompt": embed_prompts(pipeline, prompts), "anchor": embed_prompts(pipeline, anchors)}
        embeds["swapped"] = special_states_from_anchor(embeds["prompt"], embeds["anchor"], lengths, anchor_lengths)
        embeds_by_source[source] = embeds
        if projector is not None:
            differences = special_differences(embeds["prompt"], embeds["swapped"], lengths)
            share = round(protected_share(differences, projector), 3)
            print(json.dumps({"prompts": source, "protected share of [CLS]/[SEP]/padding differences": share}))

    apply_weights(pipeline, weights)
    for source, prompts in sources.items():
        seeds = [EVALUATION_SEED + index for index in range(len(prompts))]
        images = generate_latents(pipeline, GenerationRequest(prompts, seeds), progress=False).float()
        embeds = embeds_by_source[source]
        rows = distances_by_band({"erased": pipeline.unet}, pipeline.scheduler.alphas_cumprod, images, embeds, pairs)
        for label, row in rows.items():
            print(json.dumps({"prompts": source, "token states": label, "count": len(prompts), **row}))


if __name__ == "__main__":
    main()
