"""Content digests of files and weight directories: checkpoints, uploads, and the tie of an erased model to its base."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".json", ".txt", ".bin", ".ckpt", ".pt", ".pth")


def _update_with_file(digest, path: Path) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    _update_with_file(digest, Path(path))
    return digest.hexdigest()


def directory_digest(path: Path) -> str:
    """Return the SHA-256 over the relative names and bytes of the weight and config files under `path`.

    Hidden files and files of other types (READMEs, images) are left out, so
    documentation beside the weights does not change the digest.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix in WEIGHT_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        _update_with_file(digest, file)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def json_sha256(payload) -> str:
    """Return the SHA-256 hex digest of `payload` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
