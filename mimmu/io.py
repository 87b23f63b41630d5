"""Atomic file and directory writes (a reader sees the old content or the new, never half), and file locks."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp creates 0600; use the usual file mode
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def finite_or_none(payload: Any) -> Any:
    """Return `payload` with NaN and infinite floats replaced by None, so the JSON is standard."""
    if isinstance(payload, float) and not math.isfinite(payload):
        return None
    if isinstance(payload, dict):
        return {key: finite_or_none(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [finite_or_none(value) for value in payload]
    return payload


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON to `path` atomically; NaN and infinity become null."""
    text = json.dumps(finite_or_none(payload), indent=2, sort_keys=True, allow_nan=False)
    write_text_atomic(path, text + "\n")


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `path` only if the block succeeds.

    An existing `path` is moved aside first and removed after the swap, so a failure
    inside the block leaves `path` exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp creates 0700; use the usual folder mode
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = None
    try:
        if path.exists():
            previous = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, previous / "content")
        os.replace(staging, path)
    except BaseException:
        # Put the old content back and drop the new, so a failed swap changes nothing.
        if previous is not None and (previous / "content").exists():
            os.replace(previous / "content", path)
        for leftover in (staging, previous):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on the file at `path`, created if missing, for the block.

    Processes that take the same lock run their blocks one at a time, and a process that
    has to wait logs it once. The lock is released when the block ends or the process
    dies. On a local disk it covers one machine. Whether it reaches other machines
    through a network file system depends on that file system. POSIX only.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for the lock on %s, held by another process", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
