"""The MiniCanvas evaluator: a small CNN that grades an image's object, color and texture.

It plays the role of the object and style classifiers of UnlearnCanvas. Its
penultimate activations (FEATURE_DIM values) are the features for Frechet distances.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from mimmu.io import atomic_directory, write_json_atomic
from mimmu.minicanvas.vocabulary import ATTRIBUTES

FEATURE_DIM = 256


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.GroupNorm(8, out_channels),
        nn.SiLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.GroupNorm(8, out_channels),
        nn.SiLU(),
    )


class Evaluator(nn.Module):
    """Three-head classifier over 32 x 32 RGB images in [0, 1], shape (B, 3, 32, 32)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.backbone = nn.Sequential(
            _conv_block(3, width),
            nn.MaxPool2d(2),  # 16 x 16
            _conv_block(width, 2 * width),
            nn.MaxPool2d(2),  # 8 x 8
            _conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, FEATURE_DIM),
            nn.SiLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(FEATURE_DIM, len(values)) for name, values in ATTRIBUTES.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Return penultimate features, shape (B, FEATURE_DIM)."""
        return self.backbone(images * 2.0 - 1.0)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return logits per head: {"object": (B, 12), "color": (B, 8), "texture": (B, 8)}."""
        features = self.features(images)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def classify(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Return predicted class indices per head, each of shape (B,)."""
        predictions: dict[str, list[torch.Tensor]] = {name: [] for name in ATTRIBUTES}
        for start in range(0, len(images), batch_size):
            logits = self(images[start : start + batch_size])
            for name, values in logits.items():
                predictions[name].append(values.argmax(dim=1))
        return {
            name: torch.cat(values) if values else torch.zeros(0, dtype=torch.long)
            for name, values in predictions.items()
        }

    def save(self, directory: Path) -> None:
        """Write the weights (safetensors) and config.json to `directory`, atomically."""
        from safetensors.torch import save_file

        with atomic_directory(directory) as staging:
            state = {key: value.detach().contiguous() for key, value in self.state_dict().items()}
            save_file(state, staging / "model.safetensors")
            write_json_atomic(staging / "config.json", {"width": self.width})

    @classmethod
    def load(cls, directory: Path) -> Evaluator:
        """Load an evaluator saved by `save`, in eval mode."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        model = cls(width=int(config["width"]))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return model.eval()


def evaluator_accuracy(evaluator: Evaluator, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Return accuracy per head of `evaluator` on images (N, 3, 32, 32) with targets (N, 3)."""
    predictions = evaluator.classify(images)
    return {
        name: float((predictions[name] == targets[:, column]).float().mean()) for column, name in enumerate(ATTRIBUTES)
    }
