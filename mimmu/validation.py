"""Great Expectations suites for prompt sets, forgetting-set manifests and evaluation metrics.

A suite runs in an ephemeral GX context on a pandas DataFrame. Its result is returned
as JSON (kept by callers as evidence) with the failed expectations named, so a flow can
stop with a readable reason before spending compute (prompts) or before registration
(metrics).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from mimmu.concepts import concept_pattern

logger = logging.getLogger(__name__)


@dataclass
class SuiteResult:
    """The outcome of one or more expectation suites."""

    success: bool
    failures: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)

    def summary(self) -> str:
        """Return a one-line description of what failed, or 'passed'."""
        return "passed" if self.success else "; ".join(self.failures)


def _run_suite(name: str, frame, expectations: list) -> tuple[bool, list[str], dict]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas(f"{name}-source")
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}-suite"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-check", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    payload = result.to_json_dict()
    failures = []
    for item in payload["results"]:
        if not item["success"]:
            config = item["expectation_config"]
            column = config.get("kwargs", {}).get("column", "")
            examples = item["result"].get("partial_unexpected_list") or item["result"].get("observed_value")
            failures.append(f"{name}: {config['type']}({column}) failed, e.g. {examples!r}"[:300])
    return bool(payload["success"]), failures, payload


def validate_prompt_set(prompt_set: dict, token_counts: dict[str, int], max_tokens: int) -> SuiteResult:
    """Validate a prompt set: schema, no empty or duplicate prompts, concept present or absent, length."""
    import great_expectations as gx
    import pandas as pd

    concepts = prompt_set["concepts"]
    # The regex engine of pandas is Python's re, so the whole-word pattern of mimmu.concepts applies.
    union = "|".join(f"(?:{concept_pattern(c).pattern})" for c in concepts)
    regex = f"(?i){union}"

    forgetting = pd.DataFrame(prompt_set["forgetting"], columns=["prompt", "anchor", "concept"])
    forgetting["num_tokens"] = [token_counts[p] for p in forgetting["prompt"]]
    retained = pd.DataFrame({"prompt": prompt_set["retained"]})
    retained["num_tokens"] = [token_counts[p] for p in retained["prompt"]]

    def common(columns: list[str]) -> list:
        return [
            gx.expectations.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True),
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="prompt"),
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=1),
            gx.expectations.ExpectColumnValuesToNotMatchRegex(column="prompt", regex=r"^\s*$"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="prompt"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="num_tokens", min_value=1, max_value=max_tokens),
        ]

    ok_f, failed_f, result_f = _run_suite(
        "forgetting_prompts",
        forgetting,
        [
            *common(["prompt", "anchor", "concept", "num_tokens"]),
            gx.expectations.ExpectColumnValuesToMatchRegex(column="prompt", regex=regex),
            gx.expectations.ExpectColumnValuesToBeInSet(column="concept", value_set=concepts),
        ],
    )
    ok_r, failed_r, result_r = _run_suite(
        "retained_prompts",
        retained,
        [
            *common(["prompt", "num_tokens"]),
            gx.expectations.ExpectColumnValuesToNotMatchRegex(column="prompt", regex=regex),
        ],
    )
    return SuiteResult(ok_f and ok_r, failed_f + failed_r, {"forgetting": result_f, "retained": result_r})


def validate_forgetting_set(manifest: dict, latents) -> SuiteResult:
    """Validate a forgetting set: one finite latent per manifest entry, each prompt naming its concept.

    `latents` (N, C, H, W) are the stored latents. The suite checks that entries and
    latents agree in number, and that every prompt names its concept and its anchor does
    not. Every image prompt must be the prompt or its anchor. Seeds must be whole numbers
    of at least 0, and no image prompt may repeat a seed. Every latent must be finite and
    not constant.
    """
    import great_expectations as gx
    import pandas as pd
    import torch

    entries = manifest.get("entries", [])
    frame = pd.DataFrame(entries, columns=["prompt", "anchor", "concept", "image_prompt", "seed"])
    count = min(len(frame), len(latents))
    flat = torch.as_tensor(latents[:count]).float().flatten(1)
    frame["names_concept"] = [
        bool(concept_pattern(c).search(p)) for p, c in zip(frame["prompt"], frame["concept"], strict=True)
    ]
    frame["anchor_names_concept"] = [
        bool(concept_pattern(c).search(a)) for a, c in zip(frame["anchor"], frame["concept"], strict=True)
    ]
    frame["image_prompt_known"] = [
        i in (p, a) for p, a, i in zip(frame["prompt"], frame["anchor"], frame["image_prompt"], strict=True)
    ]
    finite = torch.isfinite(flat).all(dim=1).tolist() + [False] * (len(frame) - count)
    spread = flat.std(dim=1).nan_to_num(0.0).tolist() + [0.0] * (len(frame) - count)
    frame["latent_finite"], frame["latent_std"] = finite, spread
    ok, failures, payload = _run_suite(
        "forgetting_set",
        frame,
        [
            gx.expectations.ExpectTableRowCountToEqual(value=len(latents)),
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToBeInSet(column="names_concept", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="anchor_names_concept", value_set=[False]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="image_prompt_known", value_set=[True]),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="seed"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="seed", min_value=0),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["image_prompt", "seed"]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="latent_finite", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="latent_std", min_value=1e-6, strict_min=False),
        ],
    )
    return SuiteResult(ok, failures, {"forgetting_set": payload})


# Gate name -> (metric key, base key or None, direction). A "min" gate passes when the value is
# at least the threshold, and a "max" gate when it is at most the threshold. A "max_drop" gate
# passes when the base value minus the value is at most the threshold.
GATES = {
    "ee_min": ("ee", None, "min"),
    "ira_drop_max": ("ira", "ira_base", "max_drop"),
    "cra_drop_max": ("cra", "cra_base", "max_drop"),
    "paired_psnr_db_min": ("paired_psnr_db", None, "min"),
    "worst_retained_max": ("worst_retained", None, "max"),
}


def gate_values(metrics: dict, gates: dict[str, float]) -> dict[str, dict]:
    """Return, per gate, the observed value, the threshold, whether it passed and the margin."""
    unknown = sorted(set(gates) - set(GATES))
    if unknown:
        from mimmu.errors import MimmuError

        raise MimmuError(f"unknown gates {unknown}; known gates: {sorted(GATES)}")
    report = {}
    for name, threshold in gates.items():
        key, base_key, direction = GATES[name]
        value = metrics[key] if base_key is None else metrics[base_key] - metrics[key]
        margin = value - threshold if direction == "min" else threshold - value
        report[name] = {
            "metric": key,
            "observed": value,
            "threshold": threshold,
            "passed": margin >= 0,
            "margin": margin,
        }
    return report


def validate_metrics(metrics: dict, gates: dict[str, float]) -> tuple[SuiteResult, dict[str, dict]]:
    """Validate evaluation metrics against the gates with a GX suite; also return the per-gate report."""
    import great_expectations as gx
    import pandas as pd

    report = gate_values(metrics, gates)
    frame = pd.DataFrame([{name: entry["observed"] for name, entry in report.items()}])
    expectations = []
    for name, entry in report.items():
        direction = GATES[name][2]
        bounds = {"min_value": entry["threshold"]} if direction == "min" else {"max_value": entry["threshold"]}
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(column=name, **bounds))
    success, _, payload = _run_suite("metrics", frame, expectations)
    failures = [
        f"{name}: {entry['metric']} {entry['observed']:.4f} vs threshold {entry['threshold']} (short by {-entry['margin']:.4f})"
        for name, entry in report.items()
        if not entry["passed"]
    ]
    return SuiteResult(success, failures, {"metrics": payload}), report
