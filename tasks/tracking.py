"""Prefect tasks that talk to MLflow: logging a run's records and the registry steps."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from mimmu import registry
from mimmu.tracking import log_erasure_run


@task(retries=2, retry_delay_seconds=2)
def start_run(experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """Create the flow run's MLflow run (its experiment too, with artifacts beside the store) and return its id."""
    return registry.start_run(experiment, run_name, tags)


@task(retries=2, retry_delay_seconds=2)
def end_run(run_id: str, status: str) -> None:
    """Mark the MLflow run FINISHED or FAILED."""
    registry.client().set_terminated(run_id, status)


@task(retries=2, retry_delay_seconds=2)
def log_run(run_id: str, workdir: Path, metrics: dict, decision: dict, data_versions: dict) -> None:
    """Log parameters, metrics, the loss curve, the report, GX results and the erased weights."""
    log_erasure_run(run_id, workdir, metrics, decision, data_versions)


@task(retries=2, retry_delay_seconds=2)
def register(name: str, run_id: str, tags: dict[str, str]) -> dict:
    """Register the run's erased model as a version (alias candidate), or find the one with the same inputs."""
    client = registry.client()
    source = f"{client.get_run(run_id).info.artifact_uri}/erased_model"
    version, created = registry.register_version(client, name, source, run_id, tags)
    return {"version": version.version, "created": created}


@task(retries=2, retry_delay_seconds=2)
def record_decision(record: dict) -> dict:
    """Append the decision to the hash-chained audit log under the state folder (and its S3 copy when configured)."""
    from mimmu.audit import append_record
    from mimmu.home import state_dir

    return append_record(state_dir() / "audit" / "decisions.jsonl", record)


@task(retries=2, retry_delay_seconds=2)
def promote(name: str, version: str) -> None:
    """Move the production alias to the version."""
    registry.promote(registry.client(), name, version)


@task(retries=2, retry_delay_seconds=2)
def fetch_production(name: str, into: Path) -> dict | None:
    """Download the production model's erased folder; returns its path and concepts, or None."""
    client = registry.client()
    version = registry.alias_version(client, name, registry.PRODUCTION)
    if version is None:
        return None
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(into)))
    return {
        "version": version.version,
        "path": str(folder),
        "concepts": json.loads(version.tags.get("erased_concepts", "[]")),
    }
