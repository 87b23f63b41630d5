"""The erase-concept flow against a real Prefect temporary server and a SQLite MLflow store."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
import yaml

pytestmark = pytest.mark.pipeline

# A small erasure budget keeps each flow run to about a minute on two CPU cores.
TEST_PARAMS = {
    "pipeline": {
        "concept": "star",
        "erase": {"forgetting_size": 32, "epochs": 12, "batch_size": 16, "learning_rate": 0.001, "mi_check_every": 4},
        "evaluation_prompts": 32,
        "evaluation_seed": 1000,
        "gates": {"ee_min": 0.8, "ira_drop_max": 0.1, "cra_drop_max": 0.05, "paired_psnr_db_min": 20.0},
    }
}


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(TEST_PARAMS))
    return tmp_path / "home", params


def _run(concept, params, **kwargs):
    from flows.erase_concept import run

    return run(concept, params=str(params), **kwargs)


def _status():
    from mimmu.registry import registry_status

    return registry_status("minicanvas")


def test_rejected_run_leaves_production(prefect_server, home):
    state, params = home
    result = _run("star", params, epochs=0)
    assert result["decision"] == "rejected"
    assert result["exit_code"] == 3
    assert not result["gates"]["ee_min"]["passed"]
    assert result["gates"]["ee_min"]["margin"] < 0
    status = _status()
    assert status["production"] is None
    assert status["candidate"]["version"] == result["version"]
    assert status["candidate"]["gates_passed"] is False
    assert status["candidate"]["gates"]["ee_min"]["margin"] < 0

    from mimmu.registry import client

    run = client().get_run(result["mlflow_run_id"])
    assert run.data.tags["failed_gates"].startswith("ee_min")
    assert run.data.tags["prefect_flow_run_id"]
    assert "ee" in run.data.metrics
    assert "mi_target_ratio" in run.data.metrics
    assert "stderr.mi_target_ratio" in run.data.metrics

    # The same inputs again: the cached forgetting set is reused and no version is added.
    again = _run("star", params, epochs=0)
    assert again["version"] == result["version"]
    assert again["created"] is False
    assert len(list((state / "forgetting_sets").iterdir())) == 1
    assert _status()["num_versions"] == 1

    from mimmu.audit import verify_log

    assert verify_log(state / "audit" / "decisions.jsonl") == 2


def test_promoted_run_and_registry_command(prefect_server, home, capsys):
    state, params = home
    result = _run("star", params)
    assert result["decision"] == "promoted", result["failures"]
    status = _status()
    assert status["production"]["version"] == result["version"]
    assert status["production"]["erased_concepts"] == ["star"]
    assert status["production"]["gates_passed"] is True

    from mimmu.cli import main

    assert main(["registry", "status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["production"]["erased_concepts"] == ["star"]

    # A rejected candidate built on production carries both concepts and leaves production alone.
    second = _run("red", params, epochs=0)
    assert second["decision"] == "rejected"
    assert second["concepts"] == ["star", "red"]
    assert _status()["production"]["version"] == result["version"]


def test_invalid_prompt_set_stops_before_compute(prefect_server, home, tmp_path):
    from mimmu.lifecycle import GateFailure, prepare_prompt_set
    from mimmu.pipeline_config import load_pipeline_config

    state, params = home
    curated = tmp_path / "curated.json"
    prepare_prompt_set("minicanvas", ["star"], load_pipeline_config(params), curated)
    payload = json.loads(curated.read_text())
    payload["retained"].append("a red star on a shelf")
    payload["token_counts"]["a red star on a shelf"] = 8
    curated.write_text(json.dumps(payload))

    with pytest.raises(GateFailure, match="expect_column_values_to_not_match_regex") as raised:
        _run("star", params, prompt_set=str(curated))
    assert raised.value.evidence.is_file()
    assert not json.loads(raised.value.evidence.read_text())["success"]
    assert not (state / "forgetting_sets").exists()
    assert _status()["exists"] is False


def test_failure_after_registration_keeps_production(prefect_server, home):
    state, params = home
    (state / "audit").mkdir(parents=True)
    (state / "audit" / "decisions.jsonl").mkdir()  # writing the decision record now fails
    with pytest.raises(Exception, match="not a file"):
        _run("star", params)
    status = _status()
    assert status["production"] is None
    assert status["candidate"] is not None


def _register_and_promote(home_dir: str, index: int, queue) -> None:
    os.environ["MIMMU_HOME"] = home_dir
    from mimmu import registry

    client = registry.client()
    run = client.create_run(client.get_experiment_by_name("concurrency").experiment_id)
    version, _ = registry.register_version(
        client,
        "mimmu-minicanvas",
        f"file:///tmp/source-{index}",
        run.info.run_id,
        {"inputs_digest": f"d{index}", "erased_concepts": json.dumps([f"c{index}"]), "gates_passed": "true"},
    )
    registry.promote(client, "mimmu-minicanvas", version.version)
    queue.put(version.version)


def test_concurrent_registrations_stay_consistent(home):
    state, _ = home
    from mimmu.registry import artifact_location, client

    client().create_experiment("concurrency", artifact_location=artifact_location())  # create the store first
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_register_and_promote, args=(str(state), i, queue)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    versions = sorted(int(queue.get(timeout=5)) for _ in workers)
    assert versions == [1, 2, 3, 4]
    status = _status()
    assert status["num_versions"] == 4
    assert int(status["production"]["version"]) in versions


def test_dvc_dry_run_lists_every_stage():
    import subprocess
    import sys
    from pathlib import Path

    dvc = str(Path(sys.executable).with_name("dvc"))
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [dvc, "repro", "--dry", "--force"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in (
        "train_evaluator",
        "train_vae",
        "train_unet",
        "check_minicanvas",
        "prompt_set",
        "validate_prompt_set",
        "forgetting_set",
        "erase",
        "evaluate",
        "validate_metrics",
    ):
        assert f"'{stage}'" in result.stdout, stage
