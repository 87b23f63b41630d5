"""Output folders for commands: checked before work starts, written atomically after."""

from __future__ import annotations

from pathlib import Path

from mimmu.errors import MimmuError


def check_output_dir(path: Path, overwrite: bool = False) -> Path:
    """Return `path` if a command may write a folder there, else raise with the fix."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MimmuError(f"output path {str(path)!r} is a file; pass a folder path with --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise MimmuError(f"output folder {str(path)!r} is not empty; pass another --out or add --overwrite")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MimmuError(f"output path {str(path)!r} is below a file ({str(parent)!r}); pass a folder path")
    return path


def check_output_file(path: Path) -> Path:
    """Return `path` if a command may write a file there, else raise with the fix."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise MimmuError(f"output path {str(path)!r} is a folder; pass a file path")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MimmuError(f"output path {str(path)!r} is below a file ({str(parent)!r}); pass another path")
    return path
