"""The MiniCanvas renderer: vocabulary, determinism, value ranges."""

from __future__ import annotations

import numpy as np
import pytest

from mimmu.minicanvas.render import IMAGE_SIZE, Labels, render, render_batch, shape_mask
from mimmu.minicanvas.vocabulary import (
    COLORS,
    ENTANGLED_PAIRS,
    OBJECTS,
    TEXTURES,
    attribute_of,
)


def test_vocabulary_sizes_and_names():
    assert len(OBJECTS) == 12
    assert len(COLORS) == 8
    assert len(TEXTURES) == 8
    assert "lightning bolt" in OBJECTS
    assert len(set(OBJECTS) | set(COLORS) | set(TEXTURES)) == 28


def test_entangled_pairs_are_objects():
    for first, second in ENTANGLED_PAIRS:
        assert first in OBJECTS
        assert second in OBJECTS


def test_attribute_of_each_concept():
    assert attribute_of("star") == "object"
    assert attribute_of("red") == "color"
    assert attribute_of("striped") == "texture"
    with pytest.raises(KeyError, match="unicorn"):
        attribute_of("unicorn")


def test_render_same_seed_same_pixels():
    labels = Labels("star", "red", "speckled")
    first = render(labels, seed=7)
    second = render(labels, seed=7)
    assert np.array_equal(first, second)


def test_render_other_seed_other_pixels():
    labels = Labels("star", "red", "solid")
    assert not np.array_equal(render(labels, seed=1), render(labels, seed=2))


@pytest.mark.parametrize("texture", TEXTURES)
@pytest.mark.parametrize("name", OBJECTS)
def test_render_every_combination_in_range(name, texture):
    image = render(Labels(name, "white", texture), seed=3)
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert image.dtype == np.float32
    assert image.min() >= 0.0
    assert image.max() <= 1.0
    # The object must cover a visible share of the canvas, or it cannot be recognised.
    bright = (image.max(axis=2) > 0.2).mean()
    assert bright > 0.08, f"{name} with {texture} covers only {bright:.2%} of the image"


def test_color_sets_dominant_channel():
    red = render(Labels("square", "red", "solid"), seed=0)
    blue = render(Labels("square", "blue", "solid"), seed=0)
    assert red[..., 0].mean() > red[..., 2].mean()
    assert blue[..., 2].mean() > blue[..., 0].mean()


def test_ring_has_hole_circle_does_not():
    x = np.zeros(1)
    y = np.zeros(1)
    assert shape_mask("circle", x, y)[0]
    assert not shape_mask("ring", x, y)[0]


def test_labels_reject_unknown_values():
    with pytest.raises(ValueError, match="unknown object 'unicorn'"):
        Labels("unicorn", "red", "solid")
    with pytest.raises(ValueError, match="unknown color 'magenta'"):
        Labels("star", "magenta", "solid")


def test_render_batch_requires_one_seed_per_image():
    with pytest.raises(ValueError, match="one seed per image"):
        render_batch([Labels("star", "red", "solid")], [1, 2])
    assert render_batch([], []).shape == (0, IMAGE_SIZE, IMAGE_SIZE, 3)
