"""Great Expectations suites for prompt sets and metrics, and the audit log chain."""

from __future__ import annotations

import copy
import json
import multiprocessing
from pathlib import Path

import pytest
import torch

from mimmu.audit import append_record, verify_log
from mimmu.config import EraseConfig
from mimmu.errors import MimmuError
from mimmu.prompt_sets import build_prompt_set
from mimmu.validation import gate_values, validate_forgetting_set, validate_metrics, validate_prompt_set


@pytest.fixture(scope="module")
def prompt_set():
    payload = build_prompt_set(["star"], "context", 16, retained_per_concept=2, evaluation_size=8, seed=0).to_dict()
    prompts = {p["prompt"] for p in payload["forgetting"]} | set(payload["retained"])
    payload["token_counts"] = {p: len(p.split()) + 2 for p in prompts}
    return payload


def _validate(payload, max_tokens=24):
    return validate_prompt_set(payload, payload["token_counts"], max_tokens)


def test_valid_prompt_set_passes(prompt_set):
    result = _validate(prompt_set)
    assert result.success, result.summary()
    assert result.results["forgetting"]["success"]


def test_retained_prompt_with_concept_fails(prompt_set):
    broken = copy.deepcopy(prompt_set)
    broken["retained"].append("a blue Star")
    broken["token_counts"]["a blue Star"] = 5
    result = _validate(broken)
    assert not result.success
    assert any(
        "retained_prompts: expect_column_values_to_not_match_regex(prompt)" in f and "a blue Star" in f
        for f in result.failures
    )


def test_forgetting_prompt_without_concept_fails(prompt_set):
    broken = copy.deepcopy(prompt_set)
    broken["forgetting"].append({"prompt": "a starfish", "anchor": "a", "concept": "star"})
    broken["token_counts"]["a starfish"] = 4
    result = _validate(broken)
    assert not result.success
    assert any("expect_column_values_to_match_regex(prompt)" in f for f in result.failures)


def test_duplicate_and_empty_prompts_fail(prompt_set):
    broken = copy.deepcopy(prompt_set)
    broken["retained"] += [broken["retained"][0], " "]
    broken["token_counts"][" "] = 2
    result = _validate(broken)
    failures = " ".join(result.failures)
    assert "expect_column_values_to_be_unique(prompt)" in failures
    assert "expect_column_values_to_not_match_regex(prompt)" in failures


def test_prompt_over_token_limit_fails(prompt_set):
    result = _validate(prompt_set, max_tokens=3)
    assert not result.success
    assert any("expect_column_values_to_be_between(num_tokens)" in f for f in result.failures)


def _forgetting_manifest(count: int = 6) -> tuple[dict, torch.Tensor]:
    prompts = build_prompt_set(["star"], "context", count, seed=0).forgetting
    entries = [
        {"prompt": p.prompt, "anchor": p.anchor, "concept": p.concept, "image_prompt": p.prompt, "seed": i}
        for i, p in enumerate(prompts)
    ]
    return {"entries": entries}, torch.randn(len(entries), 4, 8, 8, generator=torch.Generator().manual_seed(0))


def test_valid_forgetting_set_passes():
    manifest, latents = _forgetting_manifest()
    result = validate_forgetting_set(manifest, latents)
    assert result.success, result.failures


@pytest.mark.parametrize(
    ("breakage", "failed"),
    [
        ("nan_latent", "latent_finite"),
        ("constant_latent", "latent_std"),
        ("missing_latent", "expect_table_row_count_to_equal"),
        ("anchor_keeps_concept", "anchor_names_concept"),
        ("prompt_lacks_concept", "names_concept"),
        ("repeated_seed", "expect_compound_columns_to_be_unique"),
        ("foreign_image_prompt", "image_prompt_known"),
    ],
)
def test_broken_forgetting_set_fails(breakage, failed):
    manifest, latents = _forgetting_manifest()
    entries = manifest["entries"]
    if breakage == "nan_latent":
        latents[2, 0, 0, 0] = float("nan")
    elif breakage == "constant_latent":
        latents[1] = 0.5
    elif breakage == "missing_latent":
        latents = latents[:-1]
    elif breakage == "anchor_keeps_concept":
        entries[0]["anchor"] = entries[0]["prompt"]
    elif breakage == "prompt_lacks_concept":
        entries[3]["prompt"] = entries[3]["anchor"]
        entries[3]["image_prompt"] = entries[3]["anchor"]
    elif breakage == "repeated_seed":
        entries[1]["image_prompt"], entries[1]["seed"] = entries[0]["image_prompt"], entries[0]["seed"]
    else:
        entries[4]["image_prompt"] = "a blue heart"
    result = validate_forgetting_set(manifest, latents)
    assert not result.success
    assert any(failed in failure for failure in result.failures), result.failures


def test_metric_gates_report_margin():
    metrics = {"ee": 0.5, "ira": 0.80, "ira_base": 0.85, "cra": 0.9, "cra_base": 0.9, "paired_psnr_db": 40.0}
    gates = {"ee_min": 0.9, "ira_drop_max": 0.02, "cra_drop_max": 0.02, "paired_psnr_db_min": 30.0}
    result, report = validate_metrics(metrics, gates)
    assert not result.success
    assert report["ee_min"]["margin"] == pytest.approx(-0.4)
    assert report["ira_drop_max"]["margin"] == pytest.approx(-0.03)
    assert report["cra_drop_max"]["passed"]
    assert any(f.startswith("ee_min: ee 0.5000 vs threshold 0.9 (short by 0.4000)") for f in result.failures)
    assert not result.results["metrics"]["success"]


def test_worst_retained_gate_catches_one_damaged_concept():
    # IRA and CRA drops within 0.02, but one retained concept lost 6 of its 73 images.
    metrics = {"ira": 0.986, "ira_base": 0.998, "cra": 0.976, "cra_base": 0.979, "worst_retained": 6 / 73}
    gates = {"ira_drop_max": 0.02, "cra_drop_max": 0.02, "worst_retained_max": 0.05}
    result, report = validate_metrics(metrics, gates)
    assert not result.success
    assert report["ira_drop_max"]["passed"] and report["cra_drop_max"]["passed"]
    assert report["worst_retained_max"]["margin"] == pytest.approx(0.05 - 6 / 73)
    assert [f.split(":")[0] for f in result.failures] == ["worst_retained_max"]
    _, report = validate_metrics({**metrics, "worst_retained": 0.021}, gates)
    assert report["worst_retained_max"]["passed"]


def test_default_gates_and_evaluation_size():
    from mimmu.pipeline_config import PipelineConfig, load_pipeline_config

    params = load_pipeline_config(Path(__file__).resolve().parents[1] / "params.yaml")
    assert params.gates == PipelineConfig().gates
    assert params.gates["worst_retained_max"] == 0.05
    assert params.evaluation_prompts == PipelineConfig().evaluation_prompts == 512
    assert params.erase == EraseConfig()  # the pipeline erases with the benchmark's defaults


def test_metric_gates_pass():
    metrics = {"ee": 0.99, "ira": 0.85, "ira_base": 0.85, "cra": 0.9, "cra_base": 0.9, "paired_psnr_db": 40.0}
    result, _ = validate_metrics(metrics, {"ee_min": 0.9, "ira_drop_max": 0.02})
    assert result.success
    assert result.failures == []


def test_unknown_gate_rejected():
    with pytest.raises(MimmuError, match="unknown gates"):
        gate_values({"ee": 1.0}, {"ee_max": 1.0})


def test_audit_log_chain_detects_edits(tmp_path):
    log = tmp_path / "audit" / "decisions.jsonl"
    append_record(log, {"decision": "reject", "version": "1"})
    append_record(log, {"decision": "promote", "version": "2"})
    assert verify_log(log) == 2
    lines = log.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["decision"] = "promote"
    log.write_text("\n".join([json.dumps(edited, sort_keys=True), lines[1]]) + "\n")
    with pytest.raises(MimmuError, match="altered at line 1"):
        verify_log(log)


def _append_many(log, writer: int, count: int, barrier) -> None:
    barrier.wait()
    for index in range(count):
        append_record(log, {"writer": writer, "index": index})


def test_concurrent_appends_keep_every_record(tmp_path):
    log = tmp_path / "audit" / "decisions.jsonl"
    context = multiprocessing.get_context("fork")
    writers, count = 4, 25
    barrier = context.Barrier(writers, timeout=60)
    processes = [
        context.Process(target=_append_many, args=(log, w, count, barrier), daemon=True) for w in range(writers)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
    assert [p.exitcode for p in processes] == [0] * writers
    assert verify_log(log) == writers * count
    records = [json.loads(line) for line in log.read_text().splitlines()]
    written = {(r["writer"], r["index"]) for r in records}
    assert written == {(w, i) for w in range(writers) for i in range(count)}
