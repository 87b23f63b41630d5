"""Training checkpoints: trainable weights, optimizer, loss-scaler and RNG state, verified on load.

A checkpoint is a folder `epoch-NNNN/` with `tensors.safetensors` and `meta.json`.
meta.json records the SHA-256 of the tensors file, so a truncated or altered file is
detected instead of silently resuming from wrong weights. It also records what the
run was (`identity`: the configuration's digest and its data), so a checkpoint of
another run is refused rather than resumed.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

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


def prune_checkpoints(folder: Path, keep: int = 2) -> None:
    """Delete all but the `keep` newest complete checkpoints under `folder`.

    The one before the newest stays as a fallback: when the newest is corrupted, deleting
    it resumes from that one. Incomplete staging folders are left to atomic_directory.
    """
    complete = sorted(p for p in Path(folder).glob("epoch-*") if (p / "meta.json").is_file())
    for path in complete[:-keep] if keep > 0 else complete:
        shutil.rmtree(path, ignore_errors=True)
        logger.debug("removed old checkpoint %s", path)


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
    if not tensors_file.is_file():
        raise MimmuError(
            f"checkpoint {str(path)!r} is corrupted (tensors.safetensors is missing); delete it to resume from an earlier one"
        )
    if file_sha256(tensors_file) != meta.get("sha256"):
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


@dataclass
class TrainingState:
    """The state a training run restores to continue exactly where it stopped."""

    parameters: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    scaler: torch.amp.GradScaler


def save_training_state(folder: Path, epoch: int, state: TrainingState, identity: dict, history) -> None:
    """Checkpoint `state` after `epoch` with the run's `identity` and `history` (losses, mi, stopped_early).

    Only the two newest checkpoints are kept.
    """
    tensors = {f"param.{name}": p for name, p in state.parameters.items()}
    optimizer_tensors, param_groups = optimizer_to_tensors(state.optimizer)
    tensors.update(optimizer_tensors)
    tensors["rng"] = state.generator.get_state()
    meta = {
        **identity,
        "param_groups": param_groups,
        "grad_scaler": state.scaler.state_dict(),
        "losses": history.losses,
        "mi": history.mi,
        "stopped_early": history.stopped_early,
    }
    save_checkpoint(folder, epoch, tensors, meta)
    prune_checkpoints(folder)


def resume_training_state(folder: Path, state: TrainingState, identity: dict, history) -> int:
    """Restore `state` and `history` from the newest checkpoint under `folder`; return its epoch, or 0 if none.

    Raises MimmuError when the checkpoint is corrupted or belongs to a run of another identity.
    """
    path = latest_checkpoint(folder)
    if path is None:
        return 0
    tensors, meta = load_checkpoint(path)
    if {key: meta.get(key) for key in identity} != identity:
        raise MimmuError(
            f"checkpoint {str(path)!r} belongs to another configuration or forgetting set; "
            "rerun with the same settings, or pass a new --out"
        )
    with torch.no_grad():
        for name, parameter in state.parameters.items():
            parameter.copy_(tensors[f"param.{name}"].to(parameter.device, parameter.dtype))
    state.optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["param_groups"]))
    state.generator.set_state(tensors["rng"])
    if meta.get("grad_scaler"):
        state.scaler.load_state_dict(meta["grad_scaler"])
    history.losses, history.mi = list(meta["losses"]), list(meta["mi"])
    history.stopped_early = bool(meta.get("stopped_early", False))
    logger.info("resuming from %s", path)
    return int(meta["epoch"])
