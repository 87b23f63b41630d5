"""Evaluation prompts: forgetting prompts name the concept, retained ones are balanced and never do."""

from collections import Counter

import numpy as np
import pytest

from mimmu.concepts import contains_concept
from mimmu.errors import MimmuError
from mimmu.minicanvas.vocabulary import ATTRIBUTES
from mimmu.prompt_sets import RETAINED_PER_FORGETTING, build_evaluation_prompts


def _split(evaluation):
    forgetting = [e for e in evaluation if e.kind == "forgetting"]
    retained = [e for e in evaluation if e.kind == "retained"]
    return forgetting, retained


def test_forgetting_prompts_name_concept():
    forgetting, _ = _split(build_evaluation_prompts(["lightning bolt"], 24, np.random.default_rng(0)))
    assert len(forgetting) == 24
    for item in forgetting:
        assert contains_concept(item.prompt, "lightning bolt")
        assert not contains_concept(item.anchor, "lightning bolt")
        assert item.labels["object"] == "lightning bolt"


@pytest.mark.parametrize("concepts", [["star"], ["star", "red"]])
def test_retained_prompts_balanced(concepts):
    forgetting, retained = _split(build_evaluation_prompts(concepts, 40, np.random.default_rng(3)))
    assert len(forgetting) == 40 * len(concepts)
    assert len(retained) == RETAINED_PER_FORGETTING * 40
    for item in retained:
        assert not any(contains_concept(item.prompt, c) for c in concepts), item.prompt
    for attribute, values in ATTRIBUTES.items():
        counts = Counter(item.labels[attribute] for item in retained)
        expected = {v for v in values if v not in concepts}
        assert set(counts) == expected
        assert max(counts.values()) - min(counts.values()) <= 1, (attribute, counts)


def test_retained_size_and_reproducibility():
    first = build_evaluation_prompts(["striped"], 8, np.random.default_rng(5), retained_size=30)
    second = build_evaluation_prompts(["striped"], 8, np.random.default_rng(5), retained_size=30)
    assert [e.prompt for e in first] == [e.prompt for e in second]
    assert len(_split(first)[1]) == 30


def test_unknown_concept_rejected():
    with pytest.raises(MimmuError, match="not a MiniCanvas attribute value"):
        build_evaluation_prompts(["teapot"], 4, np.random.default_rng(0))


def test_fully_erased_attribute_rejected():
    with pytest.raises(MimmuError, match="every texture is erased"):
        build_evaluation_prompts(list(ATTRIBUTES["texture"]), 4, np.random.default_rng(0))


def test_no_concept_rejected():
    with pytest.raises(MimmuError, match="no concept given"):
        build_evaluation_prompts([], 4, np.random.default_rng(0))
