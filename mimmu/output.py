"""Output folders and files for commands: checked before work starts, written atomically after."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mimmu.errors import MimmuError


def nearest_existing(path: Path) -> Path:
    """Return `path` or its nearest ancestor that exists."""
    while not path.exists():
        path = path.parent
    return path


def check_writable(folder: Path, path: Path) -> None:
    """Raise unless a file can be created in the existing `folder`, on the way to writing `path`.

    It creates and deletes one temporary file, which also catches read-only file systems,
    full quotas of inodes and paths such as /proc that permissions alone do not show.
    """
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".mimmu-write-check."):
            pass
    except OSError as error:
        raise MimmuError(
            f"cannot write to {str(path)!r}: {error.strerror or error} in {str(folder)!r}; "
            "pass a path on a writable disk"
        ) from error


def check_output_dir(path: Path, overwrite: bool = False, option: str = "--out") -> Path:
    """Return `path` if a command may write a folder there, else raise with the fix.

    `option` names the command-line option that gave the path, for the message.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MimmuError(f"output path {str(path)!r} is a file; pass a folder path with {option}")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise MimmuError(f"output folder {str(path)!r} is not empty; pass another {option} or add --overwrite")
    if path.is_dir() and os.path.ismount(path):
        raise MimmuError(
            f"output folder {str(path)!r} is a mount point, which cannot be replaced as a whole; "
            f"pass a folder inside it with {option}"
        )
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise MimmuError(f"output path {str(path)!r} is below a file ({str(parent)!r}); pass a folder path")
    check_writable(parent, path)
    if path.is_dir():
        check_writable(path, path)
    return path


def check_output_file(path: Path, option: str = "--json") -> Path:
    """Return `path` if a command may write a file there, else raise with the fix."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise MimmuError(f"output path {str(path)!r} is a folder; pass a file path with {option}")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise MimmuError(f"output path {str(path)!r} is below a file ({str(parent)!r}); pass another path")
    check_writable(parent, path)
    return path
