"""Model behaviour on MiniCanvas: the base model draws what it is asked, erasure removes a concept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mimmu.cli import main
from mimmu.config import EraseConfig
from mimmu.minicanvas.check import BASE_GATE, load_evaluator, run_check


@pytest.fixture(scope="module")
def evaluator():
    return load_evaluator()


def test_quick_check_reports_every_head(minicanvas_pipeline, evaluator):
    report = run_check(minicanvas_pipeline, evaluator, num_renders=200, num_generations=64, progress=False)
    assert set(report["evaluator_accuracy"]) == {"object", "color", "texture"}
    assert report["evaluator_num_samples"] == 200
    assert report["base_num_samples"] == 64
    for head in ("object", "color", "texture"):
        assert report["evaluator_accuracy"][head] >= 0.97
        # 64 images: allow about three standard errors under the gate.
        assert report["base_accuracy"][head] >= BASE_GATE[head] - 0.12


@pytest.mark.slow
def test_full_check_passes_gates(tmp_path):
    out = tmp_path / "check.json"
    assert main(["--quiet", "minicanvas", "check", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["passed"]
    assert report["base_num_samples"] >= 500


def test_generate_and_grade(tmp_path):
    out = tmp_path / "gen"
    assert (
        main(
            ["--quiet", "generate", "--prompt", "a picture of a solid red star", "--num-images", "8", "--out", str(out)]
        )
        == 0
    )
    assert main(["--quiet", "minicanvas", "grade", str(out), "--json", str(tmp_path / "grades.json")]) == 0
    grades = json.loads((tmp_path / "grades.json").read_text())
    accuracy = grades["prompts"]["a picture of a solid red star"]["accuracy"]
    assert accuracy["color"] >= 0.75
    assert accuracy["object"] >= 0.6


def test_erasure_removes_star_keeps_others(tmp_path, monkeypatch, evaluator):
    from mimmu.erase import erase
    from mimmu.evaluation import evaluate_erased

    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))
    # The default edit (star's token rows) on a short budget.
    config = EraseConfig(forgetting_size=32, epochs=12, batch_size=16, mi_check_every=4)
    erase("minicanvas", ["star"], config, tmp_path / "erased", progress=False)
    metrics, _, _ = evaluate_erased(
        "minicanvas", tmp_path / "erased", ["star"], evaluator, evaluation_size=32, progress=False, mi_images=24
    )
    assert metrics["target_rate_base"] > 0.7
    assert metrics["ee"] > 0.6
    assert metrics["mi_target_erased"] < metrics["mi_target_base"]
    assert metrics["mi"]["erased"]["forgetting"]["num_images"] == 24
    assert metrics["mi"]["base"]["retained"]["num_images"] == 24
    for group in ("target", "retained"):
        for model in ("base", "erased"):
            assert 0 < metrics["stderr"][f"mi_{group}_{model}"] < metrics[f"mi_{group}_{model}"]
    ratio = metrics["mi_target_erased"] / metrics["mi_target_base"]
    assert metrics["mi_target_ratio"] == pytest.approx(ratio)
    assert 0 < metrics["stderr"]["mi_target_ratio"] < ratio
    # Retained prompts do not name star, so their images and estimates equal the base's exactly.
    assert (metrics["ira"], metrics["cra"]) == (metrics["ira_base"], metrics["cra_base"])
    assert metrics["worst_retained"] == 0
    assert metrics["mi_retained_ratio"] == 1
    assert metrics["stderr"]["mi_retained_ratio"] == 0
    assert np.isfinite(metrics["fd"])
    assert metrics["num_forgetting"] == 32


def test_erase_and_evaluate_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))
    erased, metrics_file = tmp_path / "erased", tmp_path / "metrics.json"
    command = [
        "--quiet",
        "erase",
        "--model",
        "minicanvas",
        "--concept",
        "star",
        "--method",
        "uce",
        "--out",
        str(erased),
    ]
    assert main(command) == 0
    capsys.readouterr()
    command = ["--quiet", "evaluate", "--model", "minicanvas", "--erased", str(erased), "--json", str(metrics_file)]
    assert main([*command, "--num-prompts", "8", "--mi-images", "4"]) == 0

    metrics = json.loads(metrics_file.read_text())
    worst = metrics["retained_drops"][metrics["worst_retained_concept"]]
    assert worst["drop"] == metrics["worst_retained"]
    assert worst["stderr"] == metrics["stderr"]["worst_retained"]
    assert all(0 <= drop["stderr"] <= 1 for drop in metrics["retained_drops"].values())
    printed = capsys.readouterr().out
    expected = f"worst retained {metrics['worst_retained']:.3f} +- {metrics['stderr']['worst_retained']:.3f}"
    assert f"{expected} ({metrics['worst_retained_concept']})" in printed
    assert f"wrote {metrics_file}" in printed
