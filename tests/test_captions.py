"""Caption templates, their split and caption sampling."""

from __future__ import annotations

import numpy as np

from mimmu.minicanvas.captions import (
    EMPTY_CAPTION_RATE,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    full_templates,
    sample_caption,
)
from mimmu.minicanvas.render import Labels


def test_split_is_disjoint():
    train = {t.pattern for t in TRAIN_TEMPLATES}
    heldout = {t.pattern for t in HELDOUT_TEMPLATES}
    assert not train & heldout


def test_heldout_has_full_templates():
    assert len(full_templates(HELDOUT_TEMPLATES)) >= 2
    assert len(full_templates(TRAIN_TEMPLATES)) >= 2


def test_templates_name_all_some_or_none():
    counts = {len(t.attributes) for t in TRAIN_TEMPLATES}
    assert counts >= {1, 2, 3}


def test_template_format_fills_every_field():
    labels = Labels("lightning bolt", "yellow", "dotted")
    for template in TRAIN_TEMPLATES + HELDOUT_TEMPLATES:
        caption = template.format(labels)
        assert "{" not in caption
        for attribute in template.attributes:
            assert getattr(labels, attribute) in caption


def test_heldout_captions_never_produced_by_training():
    labels = Labels("star", "red", "striped")
    rng = np.random.default_rng(0)
    training = {sample_caption(labels, rng) for _ in range(3000)}
    for template in HELDOUT_TEMPLATES:
        assert template.format(labels) not in training


def test_sample_caption_deterministic_and_empty_rate():
    labels = Labels("heart", "green", "solid")
    first = [sample_caption(labels, np.random.default_rng(5)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = np.random.default_rng(1)
    captions = [sample_caption(labels, rng) for _ in range(4000)]
    empty = captions.count("") / len(captions)
    assert abs(empty - EMPTY_CAPTION_RATE) < 0.02
