"""Writing a generation run to disk: PNGs, a grid and a manifest, all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mimmu import __version__
from mimmu.generate import GenerationRequest
from mimmu.io import atomic_directory, write_json_atomic


def write_generation(
    out: Path, images: np.ndarray, grid: np.ndarray, request: GenerationRequest, settings: dict
) -> None:
    """Write uint8 `images` (N, H, W, 3), `grid` and manifest.json into `out` atomically."""
    with atomic_directory(out) as staging:
        (staging / "images").mkdir()
        entries = []
        for index, (image, prompt, seed) in enumerate(zip(images, request.prompts, request.seeds, strict=True)):
            name = f"images/{index:05d}.png"
            Image.fromarray(image).save(staging / name)
            entries.append({"file": name, "prompt": prompt, "seed": seed})
        Image.fromarray(grid).save(staging / "grid.png")
        write_json_atomic(
            staging / "manifest.json",
            {
                **settings,
                "mimmu_version": __version__,
                "height": int(images.shape[1]),
                "width": int(images.shape[2]),
                "grid": "grid.png",
                "images": entries,
            },
        )
