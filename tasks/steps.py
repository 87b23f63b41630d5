"""Prefect tasks, one per lifecycle step, each a thin wrapper over mimmu.lifecycle.

Retries go on the steps that talk to the registry or the artifact store (I/O). The
compute steps carry the `gpu` tag, whose concurrency limit lets one of them run at a
time. The prompt set is cached on its inputs, and the forgetting set is reused through
the library's own store, which is keyed on everything that determines it.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from mimmu import lifecycle
from mimmu.pipeline_config import PipelineConfig

GPU_TAG = "gpu"
GPU_SLOTS = 1


def ensure_gpu_limit() -> None:
    """Create the `gpu` tag concurrency limit on the Prefect server unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_concurrency_limit_by_tag(GPU_TAG)
        except ObjectNotFound:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=GPU_SLOTS)


@task(retries=2, retry_delay_seconds=2)
def check_object_stores() -> list[str]:
    """Check that the buckets of the configured s3:// locations exist before any compute."""
    return lifecycle.check_object_stores()


@task(cache_policy=INPUTS + TASK_SOURCE)
def prepare_prompt_set(model: str, concepts: list[str], config: PipelineConfig, out: Path) -> Path:
    """Build and write the prompt set for the concepts."""
    return lifecycle.prepare_prompt_set(model, concepts, config, out)


@task
def import_prompt_set(path: Path, concept: str, out: Path) -> Path:
    """Copy a curated prompt-set file into the run folder after checking that it parses and names the concept."""
    return lifecycle.import_prompt_set(path, concept, out)


@task
def validate_prompt_set(path: Path, evidence: Path) -> dict:
    """Run the prompt-set expectation suite; fail the flow before compute if it fails."""
    return lifecycle.validate_prompt_set_file(path, evidence)


@task(tags=[GPU_TAG])
def build_forgetting_set(model: str, prompt_set: Path, config: PipelineConfig) -> Path:
    """Generate the forgetting set with the frozen model, or reuse the stored one."""
    return lifecycle.build_forgetting_set_step(model, prompt_set, config)


@task
def validate_forgetting_set(folder: Path, evidence: Path) -> dict:
    """Run the forgetting-set suite; fail the flow before training if it fails."""
    return lifecycle.validate_forgetting_set_folder(folder, evidence)


@task(tags=[GPU_TAG])
def erase(model: str, concepts: list[str], config: PipelineConfig, out: Path, prompt_set: Path) -> dict:
    """Erase the concepts, training on the validated prompt-set file, and write the erased-model folder."""
    return lifecycle.erase_step(model, concepts, config, out, prompt_set)


@task(tags=[GPU_TAG])
def evaluate(
    base_model: str, erased: Path, concepts: list[str], config: PipelineConfig, metrics: Path, report: Path
) -> dict:
    """Evaluate the erased model against the base and write metrics and the report."""
    return lifecycle.evaluate_step(base_model, erased, concepts, config, metrics, report)


@task
def validate_metrics(metrics: Path, gates: dict[str, float], evidence: Path) -> dict:
    """Run the metrics expectation suite; return the gate decision."""
    return lifecycle.validate_metrics_file(metrics, gates, evidence)
