"""Labelled MiniCanvas datasets rendered in bulk from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from mimmu.minicanvas.render import Labels, render
from mimmu.minicanvas.vocabulary import COLORS, OBJECTS, TEXTURES


@dataclass
class RenderedSet:
    """Images (N, 3, 32, 32) in [0, 1], their labels, class indices (N, 3) and seeds."""

    images: torch.Tensor
    labels: list[Labels]
    targets: torch.Tensor
    seeds: list[int]


def random_labels(count: int, rng: np.random.Generator) -> list[Labels]:
    """Draw `count` label triples uniformly over the vocabulary."""
    objects = rng.integers(len(OBJECTS), size=count)
    colors = rng.integers(len(COLORS), size=count)
    textures = rng.integers(len(TEXTURES), size=count)
    return [Labels(OBJECTS[o], COLORS[c], TEXTURES[t]) for o, c, t in zip(objects, colors, textures, strict=True)]


def render_set(count: int, seed: int, progress: bool = True, description: str = "render") -> RenderedSet:
    """Render `count` images with uniformly drawn labels; the same seed gives the same set."""
    rng = np.random.default_rng(seed)
    labels = random_labels(count, rng)
    seeds = [int(s) for s in rng.integers(2**31 - 1, size=count)]
    images = np.empty((count, 32, 32, 3), dtype=np.float32)
    for index in tqdm(range(count), desc=description, disable=not progress, unit="img"):
        images[index] = render(labels[index], seeds[index])
    targets = torch.tensor([item.indices() for item in labels], dtype=torch.long).reshape(count, 3)
    return RenderedSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, targets, seeds)
