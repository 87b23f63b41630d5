"""Metrics of an evaluation computed from graded outputs built by hand, so every value is known."""

import numpy as np
import pytest
import torch

from mimmu.evaluation import Outputs, compute_metrics
from mimmu.metrics.rates import paired_drop_stderr
from mimmu.minicanvas.vocabulary import ATTRIBUTES
from mimmu.prompt_sets import build_evaluation_prompts


def _outputs(expected: list[dict], rng: np.random.Generator) -> Outputs:
    """Outputs whose labels all match `expected`, with small random images and features."""
    count = len(expected)
    labels = {a: np.array([ATTRIBUTES[a].index(e[a]) for e in expected]) for a in ATTRIBUTES}
    images = rng.random((count, 4, 4, 3))
    return Outputs([""] * count, torch.zeros(count, 1), images, labels, rng.normal(size=(count, 3)))


def _copy(outputs: Outputs) -> Outputs:
    labels = {a: v.copy() for a, v in outputs.labels.items()}
    return Outputs(outputs.prompts, outputs.latents, outputs.images.copy(), labels, outputs.features.copy())


@pytest.fixture
def sequential():
    """Evaluation of star, striped and red erased together: every attribute has an erased value."""
    concepts = ["star", "striped", "red"]
    evaluation = build_evaluation_prompts(concepts, 20, np.random.default_rng(0), retained_size=160)
    rng = np.random.default_rng(1)
    forgetting = [e.labels for e in evaluation if e.kind == "forgetting"]
    retained = [e.labels for e in evaluation if e.kind == "retained"]
    base = {"forgetting": _outputs(forgetting, rng), "retained": _outputs(retained, rng)}
    base["anchor"] = _copy(base["forgetting"])
    return concepts, evaluation, base


def test_identical_models_lose_nothing(sequential):
    concepts, evaluation, base = sequential
    erased = {name: _copy(base[name]) for name in ("forgetting", "retained")}
    metrics = compute_metrics(concepts, evaluation, base, erased, {})
    for key in ("ira", "cra", "context_retention"):
        assert metrics[key] == metrics[f"{key}_base"] == 1.0
    assert metrics["worst_retained"] == 0.0
    assert metrics["stderr"]["worst_retained"] == 0.0
    assert metrics["labels_unchanged"] == 1.0
    assert metrics["paired_psnr_db"] == 100.0
    # Base and anchor images all show the concept, so EE is undefined rather than a made-up number.
    assert np.isnan(metrics["ee"])


def test_flipped_orange_is_worst_retained(sequential):
    concepts, evaluation, base = sequential
    erased = {name: _copy(base[name]) for name in ("forgetting", "retained")}
    retained = [e for e in evaluation if e.kind == "retained"]
    orange = [i for i, e in enumerate(retained) if e.labels["color"] == "orange"]
    flipped = orange[: len(orange) // 2]
    erased["retained"].labels["color"][flipped] = ATTRIBUTES["color"].index("blue")
    metrics = compute_metrics(concepts, evaluation, base, erased, {})
    assert metrics["worst_retained_concept"] == "orange"
    assert metrics["worst_retained"] == pytest.approx(len(flipped) / len(orange))
    # Paired differences: one for each flipped image, zero for the rest.
    drop = len(flipped) / len(orange)
    expected_stderr = np.sqrt(drop * (1 - drop) / (len(orange) - 1))
    assert metrics["retained_drops"]["orange"]["stderr"] == pytest.approx(expected_stderr)
    assert metrics["stderr"]["worst_retained"] == pytest.approx(expected_stderr)
    assert metrics["retained_drops"]["blue"]["stderr"] == 0.0
    share = len(flipped) / len(retained)
    # Color is red's own attribute (IRA) and the other attributes of star and striped (CRA).
    assert metrics["per_concept"]["red"]["ira"] == pytest.approx(1 - share)
    assert metrics["per_concept"]["star"]["ira"] == 1.0
    assert metrics["per_concept"]["star"]["cra"] == pytest.approx(1 - share / 2)
    assert metrics["ira"] == pytest.approx(1 - share / 3)
    assert metrics["cra"] == pytest.approx(1 - share / 3)
    assert metrics["labels_unchanged"] == pytest.approx(1 - share)


def test_ee_relative_to_chance_rate(sequential):
    concepts, evaluation, base = sequential
    forgetting = [e for e in evaluation if e.kind == "forgetting"]
    stars = [i for i, e in enumerate(forgetting) if e.concept == "star"]
    base["anchor"].labels["object"][stars] = ATTRIBUTES["object"].index("circle")
    base["anchor"].labels["object"][stars[:2]] = ATTRIBUTES["object"].index("star")  # chance rate 0.1
    erased = {name: _copy(base[name]) for name in ("forgetting", "retained")}
    erased["forgetting"].labels["object"][stars] = ATTRIBUTES["object"].index("heart")
    erased["forgetting"].labels["object"][stars[:2]] = ATTRIBUTES["object"].index("star")
    metrics = compute_metrics(concepts, evaluation, base, erased, {})
    star = metrics["per_concept"]["star"]
    assert star["chance_rate"] == pytest.approx(0.1)
    assert star["target_rate_erased"] == pytest.approx(0.1)
    assert star["ee"] == pytest.approx(1.0)
    assert star["context_retention"] == 1.0


def test_paired_drop_stderr_counts_both_directions():
    # One image lost and one gained: no drop, but an error that is not zero.
    before = np.array([True, False, True, True])
    after = np.array([False, True, True, True])
    differences = np.array([1.0, -1.0, 0.0, 0.0])
    assert paired_drop_stderr(before, after) == pytest.approx(differences.std(ddof=1) / 2)
    assert paired_drop_stderr(before, before) == 0.0
    assert np.isnan(paired_drop_stderr(before[:1], after[:1]))


def test_erased_synonym_is_graded_as_its_value(minicanvas_pipeline):
    from mimmu.evaluation import nearest_concepts

    evaluation = build_evaluation_prompts(["disk"], 8, np.random.default_rng(0), retained_size=64)
    forgetting = [e for e in evaluation if e.kind == "forgetting"]
    retained = [e for e in evaluation if e.kind == "retained"]
    assert all(" disk" in e.prompt and "disk" not in e.anchor and e.concept == "circle" for e in forgetting)
    assert all(e.labels["object"] != "circle" for e in retained)
    neighbours = nearest_concepts(minicanvas_pipeline, "disk")
    assert len(neighbours) == 3
    assert "circle" not in neighbours
    rng = np.random.default_rng(1)
    base = {
        "forgetting": _outputs([e.labels for e in forgetting], rng),
        "retained": _outputs([e.labels for e in retained], rng),
    }
    base["anchor"] = _copy(base["forgetting"])
    erased = {name: _copy(base[name]) for name in ("forgetting", "retained")}
    metrics = compute_metrics(["disk"], evaluation, base, erased, {"disk": neighbours})
    assert set(metrics["per_concept"]) == {"circle"}
    assert "circle" not in metrics["retained_drops"]
    assert {"ring", "crescent"} & set(metrics["neighbour_drops"])  # circle's entangled pairs are watched
