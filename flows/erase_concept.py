"""The erase-concept flow: from a flagged concept to a production model, or a recorded rejection.

    python -m flows.erase_concept --concept star [--model minicanvas] [--epochs N]

Steps: check the configured S3 buckets, prepare the prompt set, validate it (GX),
build the forgetting set, erase, evaluate, validate the metrics against the gates (GX),
log everything to MLflow, register a candidate version, and move `production` to it
only when every gate passes.
A candidate built on production carries production's erased concepts plus the new one.

Exit codes: 0 promoted (or already erased), 2 invalid input, 3 rejected by a gate,
4 the prompt set failed validation, 1 any other failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

EXIT_PROMOTED = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_REJECTED = 3
EXIT_INVALID_PROMPTS = 4


def _configure_state() -> None:
    """Keep Prefect's and MLflow's local state under the mimmu state folder; turn analytics off."""
    from mimmu.home import state_dir

    home = state_dir().resolve()
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first start of a temporary server migrates a new database, which takes longer than
    # Prefect's default 20 s on two CPU cores.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_flow():
    """Return the Prefect flow; imported lazily so that --help needs no Prefect start-up."""
    from prefect import flow, get_run_logger
    from prefect.runtime import flow_run

    from mimmu import registry
    from mimmu.concepts import normalize_concept
    from mimmu.home import state_dir
    from mimmu.lifecycle import code_version, file_digest
    from mimmu.pipeline_config import load_pipeline_config
    from tasks import steps, tracking

    @flow(name="erase-concept")
    def erase_concept(
        concept: str,
        model: str = "minicanvas",
        epochs: int | None = None,
        params: str = "params.yaml",
        prompt_set: str | None = None,
    ) -> dict:
        """Erase `concept` from the production model of `model` (or from `model` itself) and gate the result.

        `prompt_set` replaces the generated prompt set with a curated file of the same format.
        """
        log = get_run_logger()
        steps.ensure_gpu_limit()
        config = load_pipeline_config(params).with_epochs(epochs)
        concept = normalize_concept(concept)
        steps.check_object_stores()
        run_key = flow_run.get_id() or "local"
        workdir = state_dir().resolve() / "runs" / str(run_key)
        workdir.mkdir(parents=True, exist_ok=True)
        name = registry.registered_model_name(model)

        production = tracking.fetch_production(name, workdir / "production")
        source, concepts = model, [concept]
        if production is not None:
            if concept in production["concepts"]:
                log.info("%s is already erased in production version %s", concept, production["version"])
                return {"decision": "already-erased", "version": production["version"], "exit_code": EXIT_PROMOTED}
            source, concepts = production["path"], production["concepts"] + [concept]

        if prompt_set is None:
            prompt_set = steps.prepare_prompt_set(model, [concept], config, workdir / "prompt_set.json")
        else:
            prompt_set = steps.import_prompt_set(Path(prompt_set), concept, workdir / "prompt_set.json")
        steps.validate_prompt_set(prompt_set, workdir / "prompt_set_validation.json")
        forgetting_set = steps.build_forgetting_set(source, prompt_set, config)
        steps.validate_forgetting_set(forgetting_set, workdir / "forgetting_set_validation.json")
        record = steps.erase(source, [concept], config, workdir / "erased", prompt_set)
        metrics = steps.evaluate(
            model, workdir / "erased", concepts, config, workdir / "metrics.json", workdir / "report"
        )
        decision = steps.validate_metrics(workdir / "metrics.json", config.gates, workdir / "metrics_validation.json")

        data_versions = {
            "prompt_set_md5": file_digest(prompt_set),
            "forgetting_set": Path(forgetting_set).name,
            "params_md5": file_digest(params) if Path(params).is_file() else "defaults",
        }
        inputs = json.dumps(
            {"base": record["base_digest"], "concepts": concepts, "config": config.to_dict(), "data": data_versions},
            sort_keys=True,
        )
        inputs_digest = hashlib.sha256(inputs.encode()).hexdigest()  # same inputs, same registry version
        tags = {
            "erased_concepts": json.dumps(concepts),
            "base_digest": record["base_digest"],
            "model_digest": record["model_digest"],
            "data_versions": json.dumps(data_versions, sort_keys=True),
            "code_version": code_version(),
            "gates_passed": str(decision["passed"]).lower(),
            "gates": json.dumps(decision["gates"], sort_keys=True),
            "failed_gates": "; ".join(decision["failures"]) or "none",
            "inputs_digest": inputs_digest,
            "prefect_flow_run_id": str(run_key),
        }
        run_id = tracking.start_run(
            f"erase-{name}", f"erase-{concept}", {"prefect_flow_run_id": str(run_key), "concept": concept}
        )
        try:
            tracking.log_run(run_id, workdir, metrics, decision, data_versions)
            version = tracking.register(name, run_id, tags)
            tracking.record_decision(
                {
                    "decision": "promote" if decision["passed"] else "reject",
                    "registered_model": name,
                    "version": version["version"],
                    "concepts": concepts,
                    "gates": decision["gates"],
                    "failures": decision["failures"],
                    "mlflow_run_id": run_id,
                    "prefect_flow_run_id": str(run_key),
                    "decided_by": f"gates in {params}",
                    "code_version": tags["code_version"],
                    "model_digest": record["model_digest"],
                }
            )
            if decision["passed"]:
                tracking.promote(name, version["version"])
        except BaseException:
            tracking.end_run(run_id, "FAILED")
            raise
        tracking.end_run(run_id, "FINISHED")
        verdict = "promoted" if decision["passed"] else "rejected"
        log.info("%s: version %s %s", concept, version["version"], verdict)
        return {
            "decision": verdict,
            "version": version["version"],
            "created": version["created"],
            "registered_model": name,
            "concepts": concepts,
            "gates": decision["gates"],
            "failures": decision["failures"],
            "metrics": {
                k: metrics[k]
                for k in (
                    "ee",
                    "ira",
                    "ira_base",
                    "cra",
                    "cra_base",
                    "paired_psnr_db",
                    "mi_target_erased",
                    "mi_target_base",
                )
            },
            "mlflow_run_id": run_id,
            "exit_code": EXIT_PROMOTED if decision["passed"] else EXIT_REJECTED,
        }

    return erase_concept


def run(
    concept: str,
    model: str = "minicanvas",
    epochs: int | None = None,
    params: str = "params.yaml",
    prompt_set: str | None = None,
) -> dict:
    """Run the flow and return its result dict (raises on invalid input or a failed prompt-set suite)."""
    _configure_state()
    return build_flow()(concept=concept, model=model, epochs=epochs, params=params, prompt_set=prompt_set)


def _print_result(result: dict) -> None:
    from mimmu.home import state_dir
    from mimmu.registry import tracking_uri

    print(
        f"decision: {result['decision']} (registered model {result.get('registered_model', '?')}, version {result.get('version')})"
    )
    for name, gate in result.get("gates", {}).items():
        status = "passed" if gate["passed"] else f"FAILED by {-gate['margin']:.4f}"
        print(f"  gate {name}: {gate['metric']} = {gate['observed']:.4f} (threshold {gate['threshold']}) {status}")
    for key, value in result.get("metrics", {}).items():
        print(f"  {key}: {value:.4f}")
    print(f"MLflow UI:  mlflow ui --backend-store-uri {tracking_uri()}")
    prefect_home = os.environ.get("PREFECT_HOME", str(state_dir().resolve() / "prefect"))
    print(f"Prefect UI: PREFECT_HOME={prefect_home} prefect server start")


def check_input(concept: str, model: str, prompt_set: str | None) -> None:
    """Reject a blank or unsafe concept, and one MiniCanvas never names, before any server starts."""
    from mimmu.concepts import normalize_concept

    name = normalize_concept(concept)
    if model == "minicanvas" and prompt_set is None:
        from mimmu.prompt_sets import check_concepts

        check_concepts([name])


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the flow and return the documented exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.erase_concept",
        description="Erase a concept and promote the result only if it passes the gates.",
    )
    parser.add_argument("--concept", required=True, help="the concept to erase, e.g. 'star'")
    parser.add_argument("--model", default="minicanvas", help="base model: 'minicanvas' or a diffusers pipeline folder")
    parser.add_argument("--epochs", type=int, default=None, help="override the erasure epochs of params.yaml")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    parser.add_argument(
        "--prompt-set", default=None, help="a curated prompt-set JSON file to use instead of the generated one"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API request otherwise
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # one line per registered function otherwise

    from mimmu.errors import MimmuError
    from mimmu.lifecycle import GateFailure

    try:
        check_input(args.concept, args.model, args.prompt_set)
        result = run(args.concept, args.model, args.epochs, args.params, args.prompt_set)
    except GateFailure as error:
        print(f"mimmu: input data rejected: {error} (evidence: {error.evidence})", file=sys.stderr)
        return EXIT_INVALID_PROMPTS
    except MimmuError as error:
        print(f"mimmu: error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    _print_result(result)
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
