"""Reading typed configuration sections from params.yaml."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mimmu.errors import MimmuError

ConfigT = TypeVar("ConfigT")


def load_section(path: Path, dotted_key: str, config_type: type[ConfigT]) -> ConfigT:
    """Build `config_type` from the mapping at `dotted_key` (e.g. "minicanvas.vae") of a YAML file.

    Unknown keys are rejected, so a typo in params.yaml cannot silently fall back to a default.
    """
    path = Path(path)
    if not path.is_file():
        raise MimmuError(f"parameters file {str(path)!r} not found; run from the repository root or pass --params")
    section: Any = yaml.safe_load(path.read_text()) or {}
    for key in dotted_key.split("."):
        if not isinstance(section, dict) or key not in section:
            raise MimmuError(f"{path} has no section {dotted_key!r}; add it or pass another --params")
        section = section[key]
    allowed = {field.name: field for field in dataclasses.fields(config_type)}
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise MimmuError(f"{path}: unknown keys {unknown} in {dotted_key!r}; allowed keys: {sorted(allowed)}")
    values = {}
    for name, value in section.items():
        declared = allowed[name].type  # a string, because config modules use postponed annotations
        if declared == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif declared == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        values[name] = value
    return config_type(**values)
