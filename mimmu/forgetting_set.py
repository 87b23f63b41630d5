"""The forgetting set: latents the frozen model generates for the forgetting prompts.

It is generated once and reused for every epoch and every run with the same inputs,
which is what makes MiM-MU cheaper than methods that sample from the model being
trained. A set is stored as safetensors latents plus a JSON manifest, in a folder
named by the digest of everything that determines it.

With `anchor_images`, every forgetting prompt also gets an image of its anchor prompt
(same seed). Both images are trained with the concept prompt against the anchor
prediction. Before the erasure, the concept's information sits in the images of the
concept prompt. After it, the erased model generates anchor-like images for the concept
prompt, and the remaining information is measured there. Training on both aims to keep
the concept words silent on the distribution the erasure moves to (on MiniCanvas, red's
remaining MI fell from 1.04 to 0.65 of the base's; docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mimmu.digest import file_sha256
from mimmu.errors import MimmuError
from mimmu.generate import GenerationRequest, generate_latents
from mimmu.io import atomic_directory, write_json_atomic
from mimmu.loading import sampling_defaults
from mimmu.prompt_sets import ForgettingPrompt

logger = logging.getLogger(__name__)

LATENTS_FILE = "latents.safetensors"

FORMAT = "mimmu-forgetting-set/3"  # 3: the manifest records the SHA-256 of the latents file


@dataclass
class ForgettingSet:
    """Latents x_0 (N, C, H, W) in the UNet's latent space, one per entry of `prompts`.

    With anchor images, `prompts` lists each forgetting prompt twice. The first half goes
    with the prompts' own images and the second half with their anchors' images, and each
    manifest entry names its image prompt.
    """

    latents: torch.Tensor
    prompts: list[ForgettingPrompt]
    seeds: list[int]
    manifest: dict
    path: Path | None = None
    anchor_images: bool = False

    @property
    def concept_latents(self) -> torch.Tensor:
        """Return the latents of the concept prompts' images (without the anchor images)."""
        return self.latents[: len(self.latents) // 2] if self.anchor_images else self.latents


def forgetting_set_key(
    model_digest: str, prompts: list[ForgettingPrompt], seeds: list[int], settings: dict, image_prompts: list[str]
) -> str:
    """Return the digest that names a forgetting set: model, prompts, anchors, image prompts, seeds and sampler."""
    payload = {
        "format": FORMAT,
        "model_digest": model_digest,
        "prompts": [[p.prompt, p.anchor, p.concept] for p in prompts],
        "image_prompts": image_prompts,
        "seeds": seeds,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def _is_anchor_image_layout(entries: list[dict]) -> bool:
    """Return whether the entries are the prompts' images followed by their anchors' images."""
    half = len(entries) // 2
    expected = [e["prompt"] for e in entries[:half]] + [e["anchor"] for e in entries[:half]]
    return len(entries) % 2 == 0 and [e.get("image_prompt") for e in entries] == expected


def load_forgetting_set(folder: Path) -> ForgettingSet:
    """Load a stored forgetting set, checking the latents file's digest and that the latents match the manifest."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if file_sha256(folder / LATENTS_FILE) != manifest["latents_sha256"]:
            raise MimmuError(
                f"forgetting set in {str(folder)!r} is corrupted ({LATENTS_FILE} does not match the SHA-256 in its "
                "manifest); delete the folder to rebuild it"
            )
        latents = load_file(folder / LATENTS_FILE)["latents"]
    except (OSError, json.JSONDecodeError, SafetensorError, KeyError) as error:
        raise MimmuError(
            f"forgetting set in {str(folder)!r} is unreadable ({error!r}); delete the folder to rebuild it"
        ) from error
    entries = manifest["entries"]
    if len(entries) != len(latents):
        raise MimmuError(
            f"forgetting set in {str(folder)!r} has {len(latents)} latents for {len(entries)} prompts; delete it to rebuild"
        )
    prompts = [ForgettingPrompt(e["prompt"], e["anchor"], e["concept"]) for e in entries]
    seeds = [e["seed"] for e in entries]
    anchor_images = bool(manifest.get("anchor_images", False))
    if anchor_images and not _is_anchor_image_layout(entries):
        raise MimmuError(
            f"invalid forgetting set in {str(folder)!r}: its manifest sets anchor_images, but its entries are not "
            "the prompts' images followed by their anchors' images; delete the folder to rebuild it"
        )
    return ForgettingSet(latents, prompts, seeds, manifest, folder, anchor_images)


def build_forgetting_set(
    pipeline: DiffusionPipeline,
    prompts: list[ForgettingPrompt],
    model_digest: str,
    cache_dir: Path,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
    anchor_images: bool = False,
) -> ForgettingSet:
    """Return the forgetting set for `prompts`, generating it with the (frozen) pipeline unless cached.

    `anchor_images` adds one image of each anchor prompt (same seed as its prompt's image).
    """
    defaults = sampling_defaults(pipeline)
    settings = {
        "sampler": type(pipeline.scheduler).__name__,
        "num_inference_steps": defaults.num_inference_steps,
        "guidance_scale": defaults.guidance_scale,
        # The same seeds draw other noise on another device, and another dtype rounds differently.
        "device": pipeline.device.type,
        "dtype": str(pipeline.unet.dtype).removeprefix("torch."),
    }
    seeds = [seed + index for index in range(len(prompts))]
    image_prompts = [p.prompt for p in prompts]
    if anchor_images:
        image_prompts += [p.anchor for p in prompts]
        prompts, seeds = [*prompts, *prompts], seeds + seeds
    key = forgetting_set_key(model_digest, prompts, seeds, settings, image_prompts)
    folder = Path(cache_dir) / key
    if (folder / "manifest.json").is_file():
        logger.info("reusing forgetting set %s", folder)
        return load_forgetting_set(folder)

    request = GenerationRequest(image_prompts, seeds, batch_size=batch_size)
    latents = generate_latents(pipeline, request, progress=progress, description="forgetting set").float().cpu()
    manifest = {
        "format": FORMAT,
        "key": key,
        "model_digest": model_digest,
        **settings,
        "anchor_images": anchor_images,
        "entries": [
            {"prompt": p.prompt, "anchor": p.anchor, "concept": p.concept, "image_prompt": i, "seed": s}
            for p, i, s in zip(prompts, image_prompts, seeds, strict=True)
        ],
    }
    with atomic_directory(folder) as staging:
        save_file({"latents": latents.contiguous()}, staging / LATENTS_FILE)
        manifest["latents_sha256"] = file_sha256(staging / LATENTS_FILE)
        write_json_atomic(staging / "manifest.json", manifest)
    logger.info("stored forgetting set of %d latents in %s", len(latents), folder)
    return ForgettingSet(latents, prompts, seeds, manifest, folder, anchor_images)
