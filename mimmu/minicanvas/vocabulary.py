"""The MiniCanvas vocabulary: every object, color and texture an image can have.

The order of each tuple is the class index used by the evaluator's heads, so it is
part of the stored weights' contract: append, never reorder.
"""

from __future__ import annotations

OBJECTS: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "heart",
    "cross",
    "diamond",
    "hexagon",
    "crescent",
    "ring",
    "arrow",
    "lightning bolt",
)

COLORS: tuple[str, ...] = (
    "red",
    "orange",
    "yellow",
    "green",
    "cyan",
    "blue",
    "purple",
    "white",
)

TEXTURES: tuple[str, ...] = (
    "solid",
    "striped",
    "dotted",
    "checkered",
    "gradient",
    "outlined",
    "zigzag",
    "speckled",
)

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "object": OBJECTS,
    "color": COLORS,
    "texture": TEXTURES,
}

# Pairs whose shapes overlap most; over-deletion of one shows first on the other.
ENTANGLED_PAIRS: tuple[tuple[str, str], ...] = (
    ("circle", "ring"),
    ("square", "diamond"),
    ("circle", "crescent"),
)


def attribute_of(concept: str) -> str:
    """Return the attribute ("object", "color" or "texture") that names `concept`."""
    for attribute, values in ATTRIBUTES.items():
        if concept in values:
            return attribute
    known = ", ".join(value for values in ATTRIBUTES.values() for value in values)
    raise KeyError(f"{concept!r} is not a MiniCanvas concept; known concepts: {known}")
