"""Whole-word, case-insensitive concept matching."""

from __future__ import annotations

import pytest

from mimmu.concepts import contains_concept, normalize_concept, remove_concept
from mimmu.errors import MimmuError


@pytest.mark.parametrize(
    ("prompt", "concept", "expected"),
    [
        ("a red star", "star", True),
        ("a red Star", "star", True),
        ("a starfish", "star", False),
        ("a star-shaped cookie", "star", False),
        ("a green lightning bolt", "lightning bolt", True),
        ("a green lightning  bolt", "Lightning Bolt", True),
        ("a bolt of lightning", "lightning bolt", False),
        ("a red, striped star", "red", True),
    ],
)
def test_contains_concept(prompt, concept, expected):
    assert contains_concept(prompt, concept) is expected


def test_remove_concept_gives_anchor():
    assert remove_concept("a red star", "star") == "a red"
    assert remove_concept("a star with a dotted texture, in red", "red") == "a star with a dotted texture, in"
    assert remove_concept("a green lightning bolt icon", "lightning bolt") == "a green icon"


@pytest.mark.parametrize("bad", ["", "   ", "\t"])
def test_normalize_rejects_blank(bad):
    with pytest.raises(MimmuError, match="empty or whitespace"):
        normalize_concept(bad)


@pytest.mark.parametrize("bad", ["../etc", "star/..", "a\\b", "star;rm"])
def test_normalize_rejects_path_characters(bad):
    with pytest.raises(MimmuError, match="characters other than"):
        normalize_concept(bad)


def test_normalize_collapses_spaces_and_case():
    assert normalize_concept("  Lightning   Bolt ") == "lightning bolt"
