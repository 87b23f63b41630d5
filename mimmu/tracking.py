"""Recording an erasure run in MLflow: parameters, metrics, curves and artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mlflow.entities import Metric, Param

from mimmu import registry
from mimmu.evaluation import SCALAR_METRICS


def _flatten(prefix: str, payload: dict) -> dict[str, str]:
    flat = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(f"{name}.", value))
        else:
            flat[name] = str(value)
    return flat


def log_erasure_run(run_id: str, workdir: Path, metrics: dict, decision: dict, data_versions: dict) -> None:
    """Log one erasure run's parameters, metrics, loss and MI curves and artifacts to `run_id`."""
    client = registry.client()
    workdir = Path(workdir)
    record = json.loads((workdir / "erased" / "erasure.json").read_text())
    params = {
        **_flatten("erase.", record["config"]),
        **_flatten("data.", data_versions),
        "concepts": ",".join(record["concepts"]),
    }
    existing = set(client.get_run(run_id).data.params)
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in sorted(params.items()) if k not in existing])

    values = [
        Metric(k, float(metrics[k]), 0, 0)
        for k in SCALAR_METRICS
        if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])
    ]
    values += [
        Metric(f"stderr.{k}", float(v), 0, 0)
        for k, v in sorted(metrics.get("stderr", {}).items())
        if isinstance(v, (int, float)) and math.isfinite(v)
    ]
    training = json.loads((workdir / "erased" / "training.json").read_text())
    values += [Metric("loss", float(v), 0, step) for step, v in enumerate(training["losses"]) if math.isfinite(v)]
    values += [Metric("forgetting_set_mi", float(e["value"]), 0, int(e["epoch"])) for e in training["mi"]]
    values += [Metric(f"gate.{name}.margin", float(g["margin"]), 0, 0) for name, g in decision["gates"].items()]
    for start in range(0, len(values), 900):
        client.log_batch(run_id, metrics=values[start : start + 900])

    client.set_tag(run_id, "gates_passed", str(decision["passed"]).lower())
    client.set_tag(
        run_id, "failed_gates", ", ".join(n for n, g in decision["gates"].items() if not g["passed"]) or "none"
    )
    client.log_artifacts(run_id, str(workdir / "erased"), "erased_model")
    for name in (
        "prompt_set.json",
        "prompt_set_validation.json",
        "forgetting_set_validation.json",
        "metrics.json",
        "metrics_validation.json",
    ):
        if (workdir / name).is_file():
            client.log_artifact(run_id, str(workdir / name), "records")
    if (workdir / "report").is_dir():
        client.log_artifacts(run_id, str(workdir / "report"), "report")
