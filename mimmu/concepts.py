"""Concept names and whole-word, case-insensitive matching of concepts in prompts."""

from __future__ import annotations

import re

from mimmu.errors import MimmuError


def normalize_concept(concept: str) -> str:
    """Return `concept` lower-cased with single spaces, or raise if it is empty or unsafe."""
    if not isinstance(concept, str) or not concept.strip():
        raise MimmuError(f"concept {concept!r} is empty or whitespace; pass a word such as 'star'")
    words = concept.strip().lower().split()
    name = " ".join(words)
    if not re.fullmatch(r"[a-z0-9][a-z0-9 '\-]*", name):
        raise MimmuError(
            f"concept {concept!r} contains characters other than letters, digits, spaces, "
            "hyphens and apostrophes; pass a plain name such as 'lightning bolt'"
        )
    return name


def concept_pattern(concept: str) -> re.Pattern[str]:
    """Return a regex that finds `concept` as whole words, any case, any run of spaces between words."""
    words = normalize_concept(concept).split(" ")
    return re.compile(r"(?<![\w-])" + r"\s+".join(re.escape(w) for w in words) + r"(?![\w-])", re.IGNORECASE)


def contains_concept(prompt: str, concept: str) -> bool:
    """Return whether `prompt` names `concept` as whole words ("star" is not in "starfish")."""
    return concept_pattern(concept).search(prompt) is not None


def remove_concept(prompt: str, concept: str) -> str:
    """Return `prompt` with every whole-word occurrence of `concept` removed and spaces tidied.

    "a red star" without "star" is "a red": the anchor prompt of the conditional form.
    """
    stripped = concept_pattern(concept).sub(" ", prompt)
    stripped = re.sub(r"\s+([,.;:])", r"\1", stripped)
    return re.sub(r"\s+", " ", stripped).strip()
