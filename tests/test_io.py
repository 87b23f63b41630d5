"""Atomic writes and params.yaml parsing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mimmu.errors import MimmuError
from mimmu.io import atomic_directory, write_json_atomic
from mimmu.params import load_section


def test_atomic_directory_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert (target / "old.txt").read_text() == "old"
    assert not (target / "new.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_directory_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_json_atomic_leaves_no_temporary(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"b": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "b": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@dataclass(frozen=True)
class _Config:
    steps: int = 1
    learning_rate: float = 0.1


def test_load_section_casts_and_rejects_unknown(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("a:\n  b:\n    steps: 3\n    learning_rate: 1\n")
    assert load_section(params, "a.b", _Config) == _Config(steps=3, learning_rate=1.0)
    params.write_text("a:\n  b:\n    stepz: 3\n")
    with pytest.raises(MimmuError, match=r"unknown keys \['stepz'\]"):
        load_section(params, "a.b", _Config)
    with pytest.raises(MimmuError, match="no section 'a.c'"):
        load_section(params, "a.c", _Config)


def test_atomic_directory_failed_swap_restores(tmp_path, monkeypatch):
    import os

    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_replace = os.replace

    def replace(source, destination):
        # The first rename moves the old folder aside; the second, staging into place, fails (EBUSY, full disk).
        if ".partial" in str(source):
            raise OSError(16, "Device or resource busy")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="busy"), atomic_directory(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .partial or .old left behind
