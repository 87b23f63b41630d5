"""The MLflow model registry: one registered model per base model, one version per erased model.

Aliases mark the lifecycle: `candidate` on registration, `production` only after the
gates pass. Each version is tagged with its erased concepts, base digest, data
versions, code version, gate results and a digest of its inputs, which makes
registration idempotent: the same inputs find their existing version instead of
adding a duplicate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from mimmu.errors import MimmuError
from mimmu.home import state_dir
from mimmu.io import exclusive_lock
from mimmu.object_store import S3Uri, looks_like_s3, parse_s3_uri

logger = logging.getLogger(__name__)

CANDIDATE = "candidate"
PRODUCTION = "production"
ARTIFACT_URI_VARIABLE = "MIMMU_ARTIFACT_URI"


def tracking_uri() -> str:
    """Return MLFLOW_TRACKING_URI, or a SQLite store under the state folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = state_dir().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def artifact_s3_uri() -> S3Uri | None:
    """Return MIMMU_ARTIFACT_URI parsed as an S3 URI when it names one, or None for other locations."""
    value = os.environ.get(ARTIFACT_URI_VARIABLE)
    if not value or not looks_like_s3(value):
        return None
    return parse_s3_uri(value, ARTIFACT_URI_VARIABLE)


def artifact_location() -> str:
    """Return where new experiments store artifacts: MIMMU_ARTIFACT_URI, or a folder beside the database.

    An s3:// value is validated first. MLflow's S3 artifact store then reaches it at
    MLFLOW_S3_ENDPOINT_URL. Other values go to MLflow unchanged.
    """
    s3_uri = artifact_s3_uri()
    if s3_uri is not None:
        return str(s3_uri)
    return os.environ.get(ARTIFACT_URI_VARIABLE) or (state_dir().resolve() / "mlartifacts").as_uri()


def client():
    """Return an MlflowClient on the tracking URI, raising a clear error when it is unreachable."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def start_run(experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """Create a run in `experiment` (created with the artifact location when missing) and return its id."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = mlflow_client.create_experiment(experiment, artifact_location=artifact_location())
        except MlflowException:  # another flow created it first
            experiment_id = mlflow_client.get_experiment_by_name(experiment).experiment_id
    else:
        experiment_id = found.experiment_id
    return mlflow_client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def registered_model_name(base_model: str) -> str:
    """Return the registered-model name of a base model: 'mimmu-' plus its sanitised name."""
    stem = Path(base_model).name if base_model != "minicanvas" else "minicanvas"
    return "mimmu-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-")


@contextlib.contextmanager
def registry_lock() -> Iterator[None]:
    """Hold an exclusive lock on this machine's registry updates.

    NOTE: the lock is a file under the state folder, so it serialises flows on one machine only.
    Flows on several machines that share one MLflow server are not serialised by it.
    """
    with exclusive_lock(state_dir() / "registry.lock"):
        yield


def ensure_registered_model(mlflow_client, name: str) -> None:
    """Create the registered model `name` unless it exists."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name, description="Erased variants of one base model, built by mimmu.")


def find_version(mlflow_client, name: str, inputs_digest: str):
    """Return the version of `name` registered for `inputs_digest`, or None."""
    for version in mlflow_client.search_model_versions(f"name='{name}'"):
        if version.tags.get("inputs_digest") == inputs_digest:
            return version
    return None


def alias_version(mlflow_client, name: str, alias: str):
    """Return the version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_version(mlflow_client, name: str, source: str, run_id: str, tags: dict[str, str]):
    """Create a model version from `source` with `tags`, or return the one with the same inputs digest."""
    with registry_lock():
        ensure_registered_model(mlflow_client, name)
        existing = find_version(mlflow_client, name, tags["inputs_digest"])
        if existing is not None:
            logger.info("reusing registry version %s of %s (same inputs)", existing.version, name)
            return existing, False
        version = mlflow_client.create_model_version(name, source, run_id=run_id, tags=tags)
        mlflow_client.set_registered_model_alias(name, CANDIDATE, version.version)
        return version, True


def promote(mlflow_client, name: str, version: str) -> None:
    """Move the production alias to `version`."""
    with registry_lock():
        mlflow_client.set_registered_model_alias(name, PRODUCTION, version)
        mlflow_client.set_model_version_tag(name, version, "promoted", "true")


def _describe(version) -> dict:
    if version is None:
        return None
    tags = version.tags
    return {
        "version": version.version,
        "run_id": version.run_id,
        "source": version.source,
        "erased_concepts": json.loads(tags.get("erased_concepts", "[]")),
        "gates_passed": tags.get("gates_passed") == "true",
        "gates": json.loads(tags.get("gates", "{}")),
        "base_digest": tags.get("base_digest"),
        "code_version": tags.get("code_version"),
    }


def registry_status(base_model: str = "minicanvas") -> dict:
    """Return the registered model and, for production and candidate, version, concepts and gates."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    name = registered_model_name(base_model)
    try:
        model = mlflow_client.get_registered_model(name)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(error) or "not found" in str(error).lower():
            return {
                "registered_model": name,
                "exists": False,
                "production": None,
                "candidate": None,
                "tracking_uri": tracking_uri(),
            }
        raise MimmuError(f"could not read the registry at {tracking_uri()!r}: {error}") from error
    return {
        "registered_model": name,
        "exists": True,
        "tracking_uri": tracking_uri(),
        "num_versions": len(mlflow_client.search_model_versions(f"name='{name}'")),
        "aliases": dict(model.aliases) if hasattr(model, "aliases") else {},
        "production": _describe(alias_version(mlflow_client, name, PRODUCTION)),
        "candidate": _describe(alias_version(mlflow_client, name, CANDIDATE)),
    }
