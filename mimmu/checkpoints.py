"""Training checkpoints: trainable weights, optimizer state and RNG state, verified on load.

A checkpoint is a folder `epoch-NNNN/` with `tensors.safetensors` and `meta.json`.
meta.json records the SHA-256 of the tensors file, so a truncated or altered file is
detected instead of silently resuming from wrong weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mimmu.digest import file_sha256
from mimmu.errors import MimmuError
from mimmu.io import atomic_directory, write_json_atomic

logger = logging.getLogger(__name__)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimizer's state into flat tensors ("optimizer.<index>.<key>") and its param groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, state["param_groups"]


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], param_groups: list) -> dict:
    """Rebuild an optimizer state_dict from `optimizer_to_tensors` output."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": param_groups}


def save_checkpoint(folder: Path, epoch: int, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write checkpoint `epoch` under `folder` atomically and return its path."""
    path = Path(folder) / f"epoch-{epoch:04d}"
    with atomic_directory(path) as staging:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, staging / "tensors.safetensors")
        write_json_atomic(
            staging / "meta.json", {**meta, "epoch": epoch, "sha256": file_sha256(staging / "tensors.safetensors")}
        )
    logger.info("saved checkpoint %s", path)
    return path


def latest_checkpoint(folder: Path) -> Path | None:
    """Return the newest complete checkpoint under `folder`, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    complete = sorted(p for p in folder.glob("epoch-*") if (p / "meta.json").is_file())
    return complete[-1] if complete else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load and verify a checkpoint; raise MimmuError naming the file if it is corrupted."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MimmuError(
            f"checkpoint {str(path)!r} is corrupted ({error}); delete it to resume from an earlier one"
        ) from error
    tensors_file = path / "tensors.safetensors"
    if not tensors_file.is_file() or file_sha256(tensors_file) != meta.get("sha256"):
        raise MimmuError(
            f"checkpoint {str(path)!r} is corrupted (tensors.safetensors does not match its recorded SHA-256); "
            "delete it to resume from an earlier one"
        )
    try:
        return load_file(tensors_file), meta
    except SafetensorError as error:
        raise MimmuError(
            f"checkpoint {str(path)!r} is corrupted ({error}); delete it to resume from an earlier one"
        ) from error
