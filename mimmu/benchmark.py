"""The side-by-side benchmark: every method on every concept, same prompts and seeds.

A method is named by a spec: "mimmu", "esd" (ESD-x, eta 1), "esd0" (ESD-x, eta 0),
"uce", optionally followed by "+key=value" overrides of EraseConfig, e.g.
"mimmu+anchor=empty" or "mimmu+timestep_sampling=uniform". Ablations are such specs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from mimmu.config import EraseConfig
from mimmu.errors import MimmuError
from mimmu.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

BASE_METHODS = {
    "mimmu": {"method": "mimmu"},
    "esd": {"method": "esd", "esd_eta": 1.0},
    "esd0": {"method": "esd", "esd_eta": 0.0},
    "uce": {"method": "uce"},
}


def _parse_bool(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(f"expected true or false, got {text!r}")
    return words[text.lower()]


# Parsers of override values, by the type annotation of the EraseConfig field without "| None".
CASTS = {"int": int, "float": float, "bool": _parse_bool}


def parse_method(spec: str, epochs: int | None = None) -> EraseConfig:
    """Return the EraseConfig a method spec names; raise with the allowed names otherwise."""
    name, *overrides = spec.split("+")
    if name not in BASE_METHODS:
        raise MimmuError(f"unknown method {name!r} in {spec!r}; expected one of {', '.join(BASE_METHODS)}")
    values: dict = dict(BASE_METHODS[name])
    types = {f.name: f.type for f in dataclasses.fields(EraseConfig)}  # strings: postponed annotations
    for override in overrides:
        key, _, raw = override.partition("=")
        if key not in types or not raw:
            raise MimmuError(f"invalid override {override!r} in {spec!r}; use key=value with a key of {sorted(types)}")
        cast = CASTS.get(types[key].removesuffix(" | None"), str)
        try:
            values[key] = cast(raw)
        except ValueError as error:
            raise MimmuError(f"invalid value in {override!r}: {error}") from error
    if epochs is not None:
        values["epochs"] = epochs
    return EraseConfig(**values)


def _row(concept: str, spec: str, metrics: dict) -> dict:
    from mimmu.evaluation import SCALAR_METRICS

    keys = (*SCALAR_METRICS, "worst_retained_concept", "num_forgetting", "num_retained")
    return {
        "concept": concept,
        "method": spec,
        **{k: metrics.get(k) for k in keys},
        "neighbour_drops": metrics.get("neighbour_drops"),
        "stderr": metrics.get("stderr"),
    }


def markdown_table(rows: list[dict]) -> str:
    """Return the benchmark rows as a Markdown table, MI ratios with their standard errors."""
    header = (
        "| concept | method | EE | UA | IRA (base) | CRA (base) | worst retained | PSNR dB | "
        "MI target erased/base | MI retained erased/base | erase s |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        stderr = r.get("stderr") or {}
        mi_target = _format_ratio(r["mi_target_erased"], r["mi_target_base"], stderr.get("mi_target_ratio"))
        mi_retained = _format_ratio(r["mi_retained_erased"], r["mi_retained_base"], stderr.get("mi_retained_ratio"))
        lines.append(
            f"| {r['concept']} | {r['method']} | {r['ee']:.3f} | {r['ua']:.3f} | {r['ira']:.3f} ({r['ira_base']:.3f}) | "
            f"{r['cra']:.3f} ({r['cra_base']:.3f}) | {r['worst_retained']:.3f} ({r['worst_retained_concept']}) | "
            f"{r['paired_psnr_db']:.1f} | {mi_target} | {mi_retained} | {r['erase_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _format_ratio(erased: float, base: float, stderr: float | None) -> str:
    """Format erased / base to three decimals, with "+- stderr" when the error is known."""
    if not base:
        return "nan"
    text = f"{erased / base:.3f}"
    return text if stderr is None or math.isnan(stderr) else f"{text} +- {stderr:.3f}"


def run_benchmark(
    model: str,
    concepts: list[str],
    methods: list[str],
    out: Path,
    epochs: int | None = None,
    num_prompts: int = 128,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Erase each concept with each method, evaluate on shared seeds, write results.json and results.md."""
    from mimmu.erase import erase
    from mimmu.evaluation import evaluate_erased
    from mimmu.minicanvas.check import load_evaluator
    from mimmu.output import check_output_dir
    from mimmu.prompt_sets import check_concepts

    concepts = check_concepts(concepts)
    configs = {spec: parse_method(spec, epochs) for spec in methods}
    if not configs:
        raise MimmuError("no methods given; pass --methods, e.g. mimmu,esd,uce")
    out = check_output_dir(Path(out), overwrite)
    evaluator = load_evaluator()
    base_cache: dict = {}
    rows = []
    for concept in concepts:
        for spec, config in configs.items():
            folder = out / "models" / concept.replace(" ", "_") / spec.replace("+", "_").replace("=", "-")
            logger.info("benchmark: %s with %s", concept, spec)
            erase(model, [concept], config, folder, overwrite=True, progress=progress)
            metrics, _, _ = evaluate_erased(
                model, folder, [concept], evaluator, num_prompts, progress=progress, base_cache=base_cache
            )
            rows.append(_row(concept, spec, metrics))
            write_json_atomic(
                out / "results.json", {"model": model, "concepts": concepts, "methods": methods, "rows": rows}
            )
    write_text_atomic(out / "results.md", markdown_table(rows))
    return rows
