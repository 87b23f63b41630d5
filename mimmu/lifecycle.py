"""The steps of the erase-concept lifecycle as plain functions over paths and run ids.

Prefect tasks in tasks/ wrap these one to one; the DVC stages call them through
`python -m mimmu.lifecycle`. Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

from mimmu.errors import MimmuError
from mimmu.io import write_json_atomic
from mimmu.pipeline_config import PipelineConfig

logger = logging.getLogger(__name__)


class GateFailure(MimmuError):
    """A validation suite failed; `evidence` is the saved result."""

    def __init__(self, message: str, evidence: Path) -> None:
        super().__init__(message)
        self.evidence = evidence


def file_digest(path: Path) -> str:
    """Return the MD5 of a file, as DVC records it for a file output."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> str:
    """Return the git commit of the working tree (with '-dirty' when it has changes), or the package version."""
    from mimmu import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"mimmu-{__version__}"
    return commit + ("-dirty" if dirty else "")


def load_tokenizer(model: str):
    """Return the tokenizer of a model source without loading its weights."""
    from mimmu.artifact import is_erased_dir, read_erasure
    from mimmu.loading import read_marker, resolve_source

    path = resolve_source(model)
    if is_erased_dir(path):
        return load_tokenizer(read_erasure(path)["base_model"])
    if read_marker(path).get("text_encoder_package") and not (path / "tokenizer").is_dir():
        from mimmu.text_encoder import load_text_encoder

        return load_text_encoder()[0]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path / "tokenizer")


def check_object_stores() -> list[str]:
    """Check the bucket of every configured S3 location (MLflow artifacts, audit-log copies) and return the URIs checked.

    The flow runs this first, so a missing bucket or an unreachable store fails the run
    before any compute and before the audit log is touched.
    """
    from mimmu import audit, registry
    from mimmu.object_store import check_bucket

    locations = {registry.ARTIFACT_URI_VARIABLE: registry.artifact_s3_uri(), audit.COPY_URI_VARIABLE: audit.copy_uri()}
    checked = []
    for setting, uri in locations.items():
        if uri is not None:
            check_bucket(uri, setting)
            checked.append(str(uri))
    return checked


def prepare_prompt_set(model: str, concepts: list[str], config: PipelineConfig, out: Path) -> Path:
    """Build the prompt set for `concepts` and write it, with token counts, to `out` (JSON)."""
    from mimmu.prompt_sets import build_prompt_set, check_concepts

    concepts = check_concepts(concepts)
    prompt_set = build_prompt_set(
        concepts,
        config.erase.anchor,
        config.erase.forgetting_size,
        evaluation_size=config.evaluation_prompts,
        seed=config.erase.seed,
    ).to_dict()
    tokenizer = load_tokenizer(model)
    prompts = {p["prompt"] for p in prompt_set["forgetting"]} | set(prompt_set["retained"])
    prompt_set["token_counts"] = {p: len(tokenizer(p, truncation=False).input_ids) for p in sorted(prompts)}
    prompt_set["max_tokens"] = int(tokenizer.model_max_length)
    write_json_atomic(out, prompt_set)
    return Path(out)


def import_prompt_set(path: Path, concept: str, out: Path) -> Path:
    """Copy a curated prompt-set file to `out`, checking its JSON and that it is for `concept`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MimmuError(
            f"prompt set {str(path)!r} is unreadable ({error}); pass a JSON file written by mimmu"
        ) from error
    missing = sorted(
        {"concepts", "anchor_mode", "forgetting", "retained", "evaluation", "token_counts", "max_tokens"} - set(payload)
    )
    if missing:
        raise MimmuError(f"prompt set {str(path)!r} lacks the keys {missing}; start from one written by mimmu")
    if payload["concepts"] != [concept]:
        raise MimmuError(
            f"prompt set {str(path)!r} is for {payload['concepts']}, not [{concept!r}]; pass the matching file"
        )
    write_json_atomic(out, payload)
    return Path(out)


def validate_prompt_set_file(path: Path, evidence: Path) -> dict:
    """Run the prompt-set suite on a prompt-set file; save the result; raise GateFailure if it fails."""
    from mimmu.validation import validate_prompt_set

    prompt_set = json.loads(Path(path).read_text())
    result = validate_prompt_set(prompt_set, prompt_set["token_counts"], prompt_set["max_tokens"])
    write_json_atomic(evidence, {"success": result.success, "failures": result.failures, "results": result.results})
    if not result.success:
        raise GateFailure(f"prompt set {path} failed validation: {result.summary()}", Path(evidence))
    return {"success": True, "evidence": str(evidence)}


def validate_forgetting_set_folder(folder: Path, evidence: Path) -> dict:
    """Run the forgetting-set suite on a stored forgetting set; save the result; raise GateFailure if it fails."""
    from mimmu.forgetting_set import load_forgetting_set
    from mimmu.validation import validate_forgetting_set

    forgetting_set = load_forgetting_set(folder)  # checks the latents file against its recorded digest
    result = validate_forgetting_set(forgetting_set.manifest, forgetting_set.latents)
    write_json_atomic(evidence, {"success": result.success, "failures": result.failures, "results": result.results})
    if not result.success:
        raise GateFailure(f"forgetting set {folder} failed validation: {result.summary()}", Path(evidence))
    return {"success": True, "evidence": str(evidence)}


def load_prompt_set(path: Path):
    """Read a prompt-set file back into a PromptSet."""
    from mimmu.prompt_sets import EvaluationPrompt, ForgettingPrompt, PromptSet

    payload = json.loads(Path(path).read_text())
    return PromptSet(
        concepts=payload["concepts"],
        anchor_mode=payload["anchor_mode"],
        forgetting=[ForgettingPrompt(**p) for p in payload["forgetting"]],
        retained=payload["retained"],
        evaluation=[EvaluationPrompt(**p) for p in payload["evaluation"]],
    )


def build_forgetting_set_step(model: str, prompt_set_path: Path, config: PipelineConfig) -> Path:
    """Generate (or reuse) the forgetting set of a prompt set; returns its folder."""
    from mimmu.artifact import model_digest
    from mimmu.forgetting_set import build_forgetting_set
    from mimmu.home import state_dir
    from mimmu.loading import load_pipeline

    prompt_set = load_prompt_set(prompt_set_path)
    pipeline = load_pipeline(model)
    forgetting_set = build_forgetting_set(
        pipeline,
        prompt_set.forgetting,
        model_digest(model),
        state_dir() / "forgetting_sets",
        config.erase.seed,
        progress=False,
        anchor_images=config.erase.anchor_images,
    )
    return forgetting_set.path


def erase_step(model: str, concepts: list[str], config: PipelineConfig, out: Path, prompt_set_path: Path) -> dict:
    """Erase `concepts` from `model` into `out`, training on the prompt-set file that was validated; returns the record."""
    from mimmu.erase import erase

    prompt_set = load_prompt_set(prompt_set_path)
    return erase(model, concepts, config.erase, out, overwrite=True, progress=False, prompt_set=prompt_set).record


def evaluate_step(
    base_model: str, erased: Path, concepts: list[str], config: PipelineConfig, metrics_path: Path, report: Path | None
) -> dict:
    """Evaluate `erased` against `base_model` on `concepts`; write metrics (and the HTML report)."""
    import numpy as np

    from mimmu.artifact import read_training
    from mimmu.evaluation import evaluate_erased
    from mimmu.minicanvas.check import load_evaluator
    from mimmu.prompt_sets import build_evaluation_prompts

    training = read_training(erased) if report is not None else None
    metrics, base, erased_outputs = evaluate_erased(
        base_model,
        erased,
        concepts,
        load_evaluator(),
        config.evaluation_prompts,
        config.evaluation_seed,
        progress=False,
    )
    write_json_atomic(metrics_path, metrics)
    if report is not None:
        from mimmu.report import write_report

        evaluation = build_evaluation_prompts(
            concepts, config.evaluation_prompts, np.random.default_rng(config.evaluation_seed)
        )
        write_report(report, metrics, base, erased_outputs, evaluation, training)
    return metrics


def validate_metrics_file(metrics_path: Path, gates: dict[str, float], evidence: Path) -> dict:
    """Run the metrics suite, save its result and the per-gate report, and return the decision.

    A failed gate is part of the decision, not an exception; only unreadable files raise.
    """
    from mimmu.validation import validate_metrics

    metrics = json.loads(Path(metrics_path).read_text())
    result, report = validate_metrics(metrics, gates)
    decision = {"passed": result.success, "failures": result.failures, "gates": report}
    write_json_atomic(evidence, {**decision, "results": result.results})
    return decision


def write_loss_plot(erased: Path, out: Path) -> None:
    """Write the loss curve of an erased-model folder as DVC plot data: [{"step": i, "loss": v}, ...]."""
    training = json.loads((Path(erased) / "training.json").read_text())
    write_json_atomic(out, [{"step": i, "loss": v} for i, v in enumerate(training["losses"])])


def main(argv: list[str] | None = None) -> int:
    """Run one lifecycle step from the command line, as the DVC stages do."""
    import argparse

    from mimmu.pipeline_config import load_pipeline_config

    parser = argparse.ArgumentParser(
        prog="python -m mimmu.lifecycle", description="Run one step of the erase-concept lifecycle."
    )
    parser.add_argument(
        "step", choices=["prompt-set", "validate-prompts", "forgetting-set", "erase", "evaluate", "validate-metrics"]
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    parser.add_argument("--model", default="minicanvas", help="base model (default minicanvas)")
    parser.add_argument("--data", type=Path, default=Path("data"), help="data folder (default data)")
    parser.add_argument("--metrics", type=Path, default=Path("metrics"), help="metrics folder (default metrics)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="erased-model folder root (default models)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    config = load_pipeline_config(args.params)
    concept = config.concept
    prompt_set = args.data / "prompt_sets" / "pipeline.json"
    erased = args.models / "erased"
    try:
        if args.step == "prompt-set":
            prepare_prompt_set(args.model, [concept], config, prompt_set)
        elif args.step == "validate-prompts":
            validate_prompt_set_file(prompt_set, args.metrics / "prompt_set_validation.json")
        elif args.step == "forgetting-set":
            folder = build_forgetting_set_step(args.model, prompt_set, config)
            write_json_atomic(args.data / "forgetting_set.json", {"folder": str(folder), "key": folder.name})
        elif args.step == "erase":
            erase_step(args.model, [concept], config, erased, prompt_set)
            write_loss_plot(erased, args.metrics / "pipeline_loss.json")
        elif args.step == "evaluate":
            evaluate_step(args.model, erased, [concept], config, args.metrics / "pipeline_metrics.json", None)
        else:
            decision = validate_metrics_file(
                args.metrics / "pipeline_metrics.json", config.gates, args.metrics / "pipeline_gates.json"
            )
            print("gates passed" if decision["passed"] else "gates failed: " + "; ".join(decision["failures"]))
    except MimmuError as error:
        print(f"mimmu: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
