"""Caption templates for MiniCanvas and their split into training and held-out sets.

A template names all, some or none of an image's attributes. Training captions come
from TRAIN_TEMPLATES, plus the empty caption that classifier-free guidance needs.
Evaluation prompts come from HELDOUT_TEMPLATES, which no training caption uses, so an
evaluation measures concepts rather than memorised strings.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from mimmu.minicanvas.render import Labels


@dataclass(frozen=True)
class Template:
    """A caption pattern with `{object}`, `{color}` and `{texture}` fields."""

    pattern: str

    @property
    def attributes(self) -> frozenset[str]:
        """The attributes this template names."""
        return frozenset(name for _, name, _, _ in string.Formatter().parse(self.pattern) if name)

    def format(self, labels: Labels, synonyms: dict[str, str] | None = None) -> str:
        """Fill the template with `labels`, replacing words found in `synonyms`."""
        synonyms = synonyms or {}
        words = {
            "object": synonyms.get(labels.object, labels.object),
            "color": synonyms.get(labels.color, labels.color),
            "texture": synonyms.get(labels.texture, labels.texture),
        }
        return self.pattern.format(**words)


TRAIN_TEMPLATES: tuple[Template, ...] = tuple(
    Template(pattern)
    for pattern in (
        "a {color} {object}",
        "a {texture} {color} {object}",
        "a {color} {texture} {object}",
        "a {object} with a {texture} texture, in {color}",
        "{texture} {object}, {color}",
        "a {object}",
        "a {color} shape",
        "a {texture} pattern",
        "a {texture} {object}",
        "a {object} in {color}",
        "a {color} {texture} shape",
        "a {object} with a {texture} texture",
        "a {texture} shape in {color}",
    )
)

HELDOUT_TEMPLATES: tuple[Template, ...] = tuple(
    Template(pattern)
    for pattern in (
        "a picture of a {texture} {color} {object}",
        "an image of a {color} {object} with a {texture} texture",
        "a {color} {object} that is {texture}",
        "a drawing of a {object}",
        "a {color} {object} on a dark background",
        "{color} and {texture}",
        "a {texture} {object} icon",
    )
)

# Paraphrases used in a share of training captions, so that a concept has more than
# one name, as in real prompts. Erasing a word should also erase its synonym.
SYNONYMS: dict[str, str] = {
    "circle": "disk",
    "cross": "plus sign",
    "purple": "violet",
    "striped": "banded",
}

EMPTY_CAPTION_RATE = 0.1
SYNONYM_RATE = 0.2


def full_templates(templates: tuple[Template, ...]) -> tuple[Template, ...]:
    """Return the templates that name all three attributes."""
    return tuple(t for t in templates if t.attributes == {"object", "color", "texture"})


def sample_caption(labels: Labels, rng: np.random.Generator) -> str:
    """Draw one training caption for `labels`: empty at EMPTY_CAPTION_RATE, else a train template."""
    if rng.random() < EMPTY_CAPTION_RATE:
        return ""
    template = TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))]
    synonyms = SYNONYMS if rng.random() < SYNONYM_RATE else None
    return template.format(labels, synonyms)
