"""The forgetting set: latents the frozen model generates for the forgetting prompts.

It is generated once and reused for every epoch and every run with the same inputs,
which is what makes MiM-MU cheaper than methods that sample from the model being
trained. A set is stored as safetensors latents plus a JSON manifest, in a folder
named by the digest of everything that determines it.
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

from mimmu.errors import MimmuError
from mimmu.generate import GenerationRequest, generate_latents
from mimmu.io import atomic_directory, write_json_atomic
from mimmu.loading import sampling_defaults
from mimmu.prompt_sets import ForgettingPrompt

logger = logging.getLogger(__name__)

FORMAT = "mimmu-forgetting-set/1"


@dataclass
class ForgettingSet:
    """Latents x_0 (N, C, H, W) in the UNet's latent space, one per forgetting prompt."""

    latents: torch.Tensor
    prompts: list[ForgettingPrompt]
    seeds: list[int]
    manifest: dict
    path: Path | None = None


def forgetting_set_key(model_digest: str, prompts: list[ForgettingPrompt], seeds: list[int], settings: dict) -> str:
    """Return the digest that names a forgetting set: model, prompts, anchors, seeds and sampler."""
    payload = {
        "format": FORMAT,
        "model_digest": model_digest,
        "prompts": [[p.prompt, p.anchor, p.concept] for p in prompts],
        "seeds": seeds,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def load_forgetting_set(folder: Path) -> ForgettingSet:
    """Load a stored forgetting set, checking that the latents match the manifest."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        latents = load_file(folder / "latents.safetensors")["latents"]
    except (OSError, json.JSONDecodeError, SafetensorError, KeyError) as error:
        raise MimmuError(
            f"forgetting set in {str(folder)!r} is unreadable ({error}); delete the folder to rebuild it"
        ) from error
    entries = manifest["entries"]
    if len(entries) != len(latents):
        raise MimmuError(
            f"forgetting set in {str(folder)!r} has {len(latents)} latents for {len(entries)} prompts; delete it to rebuild"
        )
    prompts = [ForgettingPrompt(e["prompt"], e["anchor"], e["concept"]) for e in entries]
    return ForgettingSet(latents, prompts, [e["seed"] for e in entries], manifest, folder)


def build_forgetting_set(
    pipeline: DiffusionPipeline,
    prompts: list[ForgettingPrompt],
    model_digest: str,
    cache_dir: Path,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> ForgettingSet:
    """Return the forgetting set for `prompts`, generating it with the (frozen) pipeline unless cached."""
    defaults = sampling_defaults(pipeline)
    settings = {
        "sampler": type(pipeline.scheduler).__name__,
        "num_inference_steps": defaults.num_inference_steps,
        "guidance_scale": defaults.guidance_scale,
    }
    seeds = [seed + index for index in range(len(prompts))]
    key = forgetting_set_key(model_digest, prompts, seeds, settings)
    folder = Path(cache_dir) / key
    if (folder / "manifest.json").is_file():
        logger.info("reusing forgetting set %s", folder)
        return load_forgetting_set(folder)

    request = GenerationRequest([p.prompt for p in prompts], seeds, batch_size=batch_size)
    latents = generate_latents(pipeline, request, progress=progress, description="forgetting set").float().cpu()
    manifest = {
        "format": FORMAT,
        "key": key,
        "model_digest": model_digest,
        **settings,
        "entries": [
            {"prompt": p.prompt, "anchor": p.anchor, "concept": p.concept, "seed": s}
            for p, s in zip(prompts, seeds, strict=True)
        ],
    }
    with atomic_directory(folder) as staging:
        save_file({"latents": latents.contiguous()}, staging / "latents.safetensors")
        write_json_atomic(staging / "manifest.json", manifest)
    logger.info("stored forgetting set of %d latents in %s", len(latents), folder)
    return ForgettingSet(latents, prompts, seeds, manifest, folder)
