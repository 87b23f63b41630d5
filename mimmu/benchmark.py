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

from mimmu.config import MAX_SEED, EraseConfig
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


def _row(concept: str, spec: str, seed: int, metrics: dict) -> dict:
    from mimmu.evaluation import SCALAR_METRICS

    keys = (*SCALAR_METRICS, "worst_retained_concept", "num_forgetting", "num_retained")
    return {
        "concept": concept,
        "method": spec,
        "seed": seed,
        **{k: metrics.get(k) for k in keys},
        "neighbour_drops": metrics.get("neighbour_drops"),
        "stderr": metrics.get("stderr"),
    }


def markdown_table(rows: list[dict]) -> str:
    """Return the benchmark rows as a Markdown table, the worst retained drop and MI ratios with their standard errors.

    When the rows come from more than one erasure seed, each row names its seed, and when
    a concept and method ran with several seeds a second table gives their mean and range.
    """
    seeded = len({r.get("seed") for r in rows}) > 1
    columns = ["concept", "method", *(["seed"] if seeded else []), "EE", "UA", "IRA (base)", "CRA (base)"]
    columns += ["worst retained", "PSNR dB", "MI target erased/base", "MI retained erased/base", "erase s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        stderr = r.get("stderr") or {}
        cells = [r["concept"], r["method"], *([str(r["seed"])] if seeded else [])]
        cells += [
            f"{r['ee']:.3f}",
            f"{r['ua']:.3f}",
            f"{r['ira']:.3f} ({r['ira_base']:.3f})",
            f"{r['cra']:.3f} ({r['cra_base']:.3f})",
            f"{_with_stderr(r['worst_retained'], stderr.get('worst_retained'))} ({r['worst_retained_concept']})",
            f"{r['paired_psnr_db']:.1f}",
            _with_stderr(r["mi_target_ratio"], stderr.get("mi_target_ratio")),
            _with_stderr(r["mi_retained_ratio"], stderr.get("mi_retained_ratio")),
            f"{r['erase_seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    repeated = len({(r["concept"], r["method"]) for r in rows}) < len(rows)
    return table + "\n" + spread_table(rows) if repeated else table


# Columns of the spread table: heading, the value of a row, and decimals shown.
SPREAD_COLUMNS = {
    "EE": (lambda r: r["ee"], 3),
    "IRA drop": (lambda r: r["ira_base"] - r["ira"], 3),
    "CRA drop": (lambda r: r["cra_base"] - r["cra"], 3),
    "worst retained": (lambda r: r["worst_retained"], 3),
    "PSNR dB": (lambda r: r["paired_psnr_db"], 1),
    "MI target erased/base": (lambda r: r["mi_target_ratio"], 3),
    "MI retained erased/base": (lambda r: r["mi_retained_ratio"], 3),
}


def spread_table(rows: list[dict]) -> str:
    """Return, per concept and method, the mean of each metric over the seeds with its range: mean (min to max)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["concept"], r["method"]), []).append(r)
    lines = [
        "| concept | method | seeds | " + " | ".join(SPREAD_COLUMNS) + " |",
        "|" + "---|" * (3 + len(SPREAD_COLUMNS)),
    ]
    for (concept, method), group in groups.items():
        cells = [concept, method, ", ".join(str(r["seed"]) for r in group)]
        for value_of, digits in SPREAD_COLUMNS.values():
            values = [value_of(r) for r in group]
            mean = sum(values) / len(values)
            cells.append(f"{mean:.{digits}f} ({min(values):.{digits}f} to {max(values):.{digits}f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _with_stderr(value: float, stderr: float | None) -> str:
    """Format a value to three decimals, with "+- stderr" when the error is known."""
    text = f"{value:.3f}"
    return text if stderr is None or math.isnan(stderr) or math.isnan(value) else f"{text} +- {stderr:.3f}"


def check_seeds(seeds: list[int] | None) -> None:
    """Raise unless `seeds` is None or a non-empty list of distinct whole numbers of at least 0."""
    if seeds is None:
        return
    if not seeds:
        raise MimmuError("no erasure seeds given; pass one or more, e.g. --seeds 0,1,2, or leave the option out")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED]
    if bad:
        raise MimmuError(f"invalid erasure seeds {bad}; each must be a whole number from 0 to {MAX_SEED}")
    if len(set(seeds)) < len(seeds):
        raise MimmuError(f"repeated erasure seeds in {seeds}; list each seed once")


def run_benchmark(
    model: str,
    concepts: list[str],
    methods: list[str],
    out: Path,
    epochs: int | None = None,
    num_prompts: int = 128,
    overwrite: bool = False,
    progress: bool = True,
    seeds: list[int] | None = None,
) -> list[dict]:
    """Erase each concept with each method, evaluate on shared seeds, write results.json and results.md.

    `seeds`, when given, replaces each method's erasure seed (prompt drawing, forgetting-set
    noise, training): every method runs once per seed, so the tables show the spread from
    training apart from the evaluation's standard errors. The evaluation seeds stay the same.
    """
    from mimmu.erase import erase
    from mimmu.evaluation import evaluate_erased
    from mimmu.minicanvas.check import load_evaluator
    from mimmu.output import check_output_dir
    from mimmu.prompt_sets import check_concepts

    concepts = check_concepts(concepts)
    repeated = sorted({spec for spec in methods if methods.count(spec) > 1})
    if repeated:
        raise MimmuError(f"method {repeated[0]!r} is given more than once; list each method once")
    configs = {spec: parse_method(spec, epochs) for spec in methods}
    if not configs:
        raise MimmuError("no methods given; pass --methods, e.g. mimmu,esd,uce")
    check_seeds(seeds)
    out = check_output_dir(Path(out), overwrite)
    evaluator = load_evaluator()
    base_cache: dict = {}
    rows = []
    for concept in concepts:
        for spec, config in configs.items():
            folder = out / "models" / concept.replace(" ", "_") / spec.replace("+", "_").replace("=", "-")
            for seed in seeds or [config.seed]:
                seed_folder = folder / f"seed-{seed}" if seeds else folder
                logger.info("benchmark: %s with %s, seed %d", concept, spec, seed)
                erase(
                    model,
                    [concept],
                    dataclasses.replace(config, seed=seed),
                    seed_folder,
                    overwrite=True,
                    progress=progress,
                )
                metrics, _, _ = evaluate_erased(
                    model, seed_folder, [concept], evaluator, num_prompts, progress=progress, base_cache=base_cache
                )
                rows.append(_row(concept, spec, seed, metrics))
                write_json_atomic(
                    out / "results.json",
                    {"model": model, "concepts": concepts, "methods": methods, "seeds": seeds, "rows": rows},
                )
    write_text_atomic(out / "results.md", markdown_table(rows))
    return rows
