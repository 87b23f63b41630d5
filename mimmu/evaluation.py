"""Evaluation of an erased model against its base: paired generations, graded and compared.

Images come from the held-out-template evaluation prompts with fixed seeds, so base
and erased images pair up one to one. The MiniCanvas evaluator labels each image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline

from mimmu.devices import peak_memory_mb
from mimmu.embeddings import embed_prompts
from mimmu.generate import GenerationRequest, decode_latents, generate_latents
from mimmu.metrics.frechet import frechet_distance
from mimmu.metrics.paired import labels_unchanged, paired_psnr_db
from mimmu.metrics.rates import binomial_stderr, erasure_efficacy, paired_drop_stderr, target_rate
from mimmu.minicanvas.check import images_to_tensor
from mimmu.minicanvas.evaluator import Evaluator
from mimmu.minicanvas.vocabulary import ATTRIBUTES, ENTANGLED_PAIRS
from mimmu.mutual_information import MI_DRAWS, paired_ratio_stderr, pointwise_mi, rows_per_group, summarize
from mimmu.prompt_sets import EvaluationPrompt, vocabulary_value

logger = logging.getLogger(__name__)

# Scalar metrics of an evaluation, as reported by trackers and benchmark tables.
SCALAR_METRICS = (
    "ua",
    "ua_base",
    "ee",
    "chance_rate",
    "ira",
    "ira_base",
    "cra",
    "cra_base",
    "context_retention",
    "context_retention_base",
    "worst_retained",
    "paired_psnr_db",
    "labels_unchanged",
    "fd",
    "mi_target_base",
    "mi_target_erased",
    "mi_retained_base",
    "mi_retained_erased",
    "mi_target_ratio",
    "mi_retained_ratio",
    "erase_seconds",
    "forgetting_set_seconds",
)

MI_IMAGES = 64  # images per MI estimate, by default


@dataclass
class Outputs:
    """Generations for a list of prompts: latents (N, C, h, w), images (N, H, W, 3), labels and features."""

    prompts: list[str]
    latents: torch.Tensor
    images: np.ndarray
    labels: dict[str, np.ndarray]
    features: np.ndarray


def generate_outputs(
    pipeline: DiffusionPipeline,
    evaluator: Evaluator,
    prompts: list[str],
    seed: int,
    batch_size: int,
    progress: bool,
    description: str,
) -> Outputs:
    """Generate one image per prompt (seed + index) and grade it."""
    seeds = [seed + index for index in range(len(prompts))]
    latents = generate_latents(
        pipeline, GenerationRequest(prompts, seeds, batch_size=batch_size), progress, description=description
    )
    images = decode_latents(pipeline, latents, batch_size)
    pixels = images_to_tensor(images)
    with torch.no_grad():
        predictions = evaluator.classify(pixels)
        features = torch.cat([evaluator.features(pixels[i : i + 256]) for i in range(0, len(pixels), 256)])
    labels = {name: predictions[name].numpy() for name in ATTRIBUTES}
    return Outputs(prompts, latents.float().cpu(), images, labels, features.numpy().astype(np.float64))


def estimate_pointwise_mi(
    pipeline: DiffusionPipeline,
    latents: torch.Tensor,
    prompts: list[str],
    anchors: list[str],
    seed: int,
    groups: list[str] | None = None,
    count: int = MI_IMAGES,
) -> torch.Tensor:
    """Return the orthogonal-form pointwise MI (nats) between prompts and their images, against the anchors.

    Uses the first `count` images, or with `groups` (the erased concept of each row) the
    first count // len(set(groups)) images of each group, so every concept gets a share.
    The rows and the noise draws depend only on the prompts and `seed`, so the estimates of
    a base and an erased model pair up row by row. Shape (rows,).
    """
    rows = rows_per_group(groups, count) if groups else list(range(min(count, len(latents))))
    device = pipeline.device
    return pointwise_mi(
        pipeline.unet,
        pipeline.scheduler.alphas_cumprod,
        latents[rows].to(device),
        embed_prompts(pipeline, [prompts[i] for i in rows]),
        embed_prompts(pipeline, [anchors[i] for i in rows]),
        draws_per_image=MI_DRAWS,
        generator=torch.Generator().manual_seed(seed),
    )


def _ratio(erased: float, base: float) -> float:
    """Return erased / base, or NaN when the base model has no MI to compare with."""
    return erased / base if base else float("nan")


def _index(attribute: str, value: str) -> int:
    return ATTRIBUTES[attribute].index(value)


def _accuracy(outputs: Outputs, expected: list[dict], attributes: list[str], rows: list[int] | None = None) -> float:
    """Return the share of (image, attribute) pairs graded as expected, over `rows` (default all)."""
    rows = range(len(expected)) if rows is None else rows
    hits = [outputs.labels[a][i] == _index(a, expected[i][a]) for i in rows for a in attributes]
    return float(np.mean(hits)) if hits else float("nan")


def retained_drops(base: Outputs, erased: Outputs, expected: list[dict], erased_values: set[str]) -> dict[str, dict]:
    """Return, per retained concept, base and erased accuracy, the drop, its paired standard error and the sample size."""
    drops = {}
    for attribute, values in ATTRIBUTES.items():
        for value in values:
            if value in erased_values:
                continue
            rows = [i for i, e in enumerate(expected) if e[attribute] == value]
            if not rows:
                continue
            index = _index(attribute, value)
            hits_base = base.labels[attribute][rows] == index
            hits_erased = erased.labels[attribute][rows] == index
            accuracy_base, accuracy_erased = float(np.mean(hits_base)), float(np.mean(hits_erased))
            drops[value] = {
                "base": accuracy_base,
                "erased": accuracy_erased,
                "drop": accuracy_base - accuracy_erased,
                "stderr": paired_drop_stderr(hits_base, hits_erased),
                "n": len(rows),
            }
    return drops


def nearest_concepts(pipeline: DiffusionPipeline, concept: str, count: int = 3) -> list[str]:
    """Return the `count` same-attribute concepts nearest to `concept` (a value or synonym) by cosine of mean token states."""
    attribute, value = vocabulary_value(concept)
    others = [v for v in ATTRIBUTES[attribute] if v != value]
    embeds = embed_prompts(pipeline, [concept, *others]).float()  # (1 + K, L, D)
    tokens = pipeline.tokenizer(
        [concept, *others], padding="max_length", max_length=embeds.shape[1], truncation=True, return_tensors="pt"
    )
    mask = tokens.attention_mask.unsqueeze(-1).to(embeds.device).float()
    pooled = (embeds * mask).sum(1) / mask.sum(1)
    similarity = torch.nn.functional.cosine_similarity(pooled[:1], pooled[1:])
    order = similarity.argsort(descending=True)[:count]
    return [others[int(i)] for i in order]


def compute_metrics(
    concepts: list[str],
    evaluation: list[EvaluationPrompt],
    base: dict[str, Outputs],
    erased: dict[str, Outputs],
    neighbours: dict[str, list[str]],
) -> dict:
    """Return every metric of an erasure from graded base and erased outputs.

    `base` and `erased` hold Outputs for "forgetting" and "retained" prompts; `base` also
    for "anchor" (the forgetting prompts with the concept removed).
    """
    forgetting = [e for e in evaluation if e.kind == "forgetting"]
    retained = [e for e in evaluation if e.kind == "retained"]
    forgetting_expected = [e.labels for e in forgetting]
    retained_expected = [e.labels for e in retained]

    # IRA, CRA and context retention are defined per erased concept k with attribute a_k.
    # IRA_k is the accuracy of a_k on retained prompts. CRA_k is the accuracy of the other
    # attributes on retained prompts, and context retention_k their accuracy on k's
    # forgetting prompts. The reported values are means over the erased concepts, so they
    # stay defined when an object, a texture and a color are erased together.
    per_concept = {}
    for concept in sorted({e.concept for e in forgetting}):
        rows = [i for i, e in enumerate(forgetting) if e.concept == concept]
        attribute, _ = vocabulary_value(concept)
        others = [a for a in ATTRIBUTES if a != attribute]
        index = _index(attribute, concept)
        rate_base = target_rate(base["forgetting"].labels[attribute][rows], index)
        rate_erased = target_rate(erased["forgetting"].labels[attribute][rows], index)
        chance = target_rate(base["anchor"].labels[attribute][rows], index)
        per_concept[concept] = {
            "target_rate_base": rate_base,
            "target_rate_erased": rate_erased,
            "chance_rate": chance,
            "ua": 1.0 - rate_erased,
            "ua_base": 1.0 - rate_base,
            "ee": erasure_efficacy(rate_base, rate_erased, chance),
            "ira": _accuracy(erased["retained"], retained_expected, [attribute]),
            "ira_base": _accuracy(base["retained"], retained_expected, [attribute]),
            "cra": _accuracy(erased["retained"], retained_expected, others),
            "cra_base": _accuracy(base["retained"], retained_expected, others),
            "context_retention": _accuracy(erased["forgetting"], forgetting_expected, others, rows),
            "context_retention_base": _accuracy(base["forgetting"], forgetting_expected, others, rows),
            "n": len(rows),
        }

    def mean_of(key: str) -> float:
        return float(np.mean([values[key] for values in per_concept.values()]))

    # Every per-concept rate is averaged over concepts; "n" is a sample size, not a rate.
    averaged = [key for key in next(iter(per_concept.values())) if key != "n"]

    values = {vocabulary_value(c)[1] for c in concepts}  # a synonym such as "disk" erases "circle"
    drops = retained_drops(base["retained"], erased["retained"], retained_expected, values)
    worst = max(drops.items(), key=lambda item: item[1]["drop"]) if drops else ("", {"drop": float("nan")})
    watched = {n for c in concepts for n in neighbours.get(c, [])}
    watched |= {b for a, b in ENTANGLED_PAIRS if a in values} | {a for a, b in ENTANGLED_PAIRS if b in values}
    n_forgetting, n_retained = len(forgetting), len(retained)

    metrics = {
        "concepts": concepts,
        **{key: mean_of(key) for key in averaged},
        "worst_retained": worst[1]["drop"],
        "worst_retained_concept": worst[0],
        "retained_drops": drops,
        "neighbour_drops": {name: drops[name] for name in sorted(watched) if name in drops},
        "paired_psnr_db": paired_psnr_db(base["retained"].images, erased["retained"].images),
        "labels_unchanged": labels_unchanged(base["retained"].labels, erased["retained"].labels),
        "fd": frechet_distance(base["retained"].features, erased["retained"].features),
        "per_concept": per_concept,
        "num_forgetting": n_forgetting,
        "num_retained": n_retained,
    }
    # Sample sizes of the rates, per concept: one graded attribute per retained prompt for IRA,
    # and each other attribute for CRA and context retention. The means share their images.
    other_count = len(ATTRIBUTES) - 1
    metrics["stderr"] = {
        "ua": binomial_stderr(metrics["ua"], n_forgetting),
        "ira": binomial_stderr(metrics["ira"], n_retained),
        "cra": binomial_stderr(metrics["cra"], other_count * n_retained),
        "context_retention": binomial_stderr(metrics["context_retention"], other_count * n_forgetting),
        "labels_unchanged": binomial_stderr(metrics["labels_unchanged"], n_retained),
        # The error of the worst concept's own drop. The maximum over concepts is biased
        # upwards, because the concept that lost most on these images is the one reported.
        "worst_retained": worst[1].get("stderr", float("nan")),
    }
    return metrics


def evaluate_erased(
    base_source: str,
    erased_dir,
    concepts: list[str] | None,
    evaluator: Evaluator,
    evaluation_size: int = 128,
    seed: int = 1000,
    batch_size: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
    base_cache: dict | None = None,
    mi_images: int = MI_IMAGES,
    allow_pickle: bool = False,
) -> tuple[dict, dict[str, Outputs], dict[str, Outputs]]:
    """Evaluate the erased model in `erased_dir` against `base_source`; returns metrics and both outputs.

    `concepts` defaults to every concept the erased model records. `base_cache`, when
    given, keeps base outputs between calls with the same prompts (a benchmark reuses them).
    Each MI estimate uses up to `mi_images` images, no more than there are prompts of its kind.
    """
    from mimmu.artifact import apply_weights, check_base, load_erased_weights, model_digest
    from mimmu.concepts import normalize_concept
    from mimmu.errors import MimmuError
    from mimmu.loading import load_pipeline
    from mimmu.prompt_sets import build_evaluation_prompts

    if isinstance(mi_images, bool) or not isinstance(mi_images, int) or mi_images < 2:
        raise MimmuError(f"invalid number of MI images {mi_images!r}; pass an integer of at least 2")
    record, weights = load_erased_weights(erased_dir)
    check_base(record, model_digest(base_source), str(base_source))
    concepts = [normalize_concept(c) for c in (concepts or record["concepts"])]
    missing = [c for c in concepts if c not in record["concepts"]]
    if missing:
        raise MimmuError(
            f"concept {missing[0]!r} is not erased in {str(erased_dir)!r}, which erased {', '.join(record['concepts'])}; "
            "pass one of those"
        )
    evaluation = build_evaluation_prompts(concepts, evaluation_size, np.random.default_rng(seed))
    forgetting = [e for e in evaluation if e.kind == "forgetting"]
    retained = [e for e in evaluation if e.kind == "retained"]
    groups = {
        "forgetting": ([e.prompt for e in forgetting], [e.anchor for e in forgetting]),
        "retained": ([e.prompt for e in retained], [e.anchor for e in retained]),
    }
    mi_groups = {"forgetting": [e.concept for e in forgetting], "retained": None}

    started = time.perf_counter()
    pipeline = load_pipeline(base_source, device, dtype, allow_pickle)
    key = (str(base_source), tuple(e.prompt for e in evaluation), seed, mi_images)
    cached = (base_cache or {}).get(key)
    if cached is None:
        base = {
            name: generate_outputs(pipeline, evaluator, prompts, seed, batch_size, progress, f"base {name}")
            for name, (prompts, _) in groups.items()
        }
        base["anchor"] = generate_outputs(
            pipeline, evaluator, groups["forgetting"][1], seed, batch_size, progress, "base anchor"
        )
        mi_base = {
            name: estimate_pointwise_mi(pipeline, base[name].latents, *groups[name], seed, mi_groups[name], mi_images)
            for name in groups
        }
        neighbours = {c: nearest_concepts(pipeline, c) for c in concepts}
        cached = (base, mi_base, neighbours)
        if base_cache is not None:
            base_cache[key] = cached
    base, mi_base, neighbours = cached

    apply_weights(pipeline, weights)
    erased = {
        name: generate_outputs(pipeline, evaluator, prompts, seed, batch_size, progress, f"erased {name}")
        for name, (prompts, _) in groups.items()
    }
    mi_erased = {
        name: estimate_pointwise_mi(pipeline, erased[name].latents, *groups[name], seed, mi_groups[name], mi_images)
        for name in groups
    }
    mi = {
        model: {name: summarize(points[name], MI_DRAWS, "orthogonal").to_dict() for name in groups}
        for model, points in (("base", mi_base), ("erased", mi_erased))
    }

    metrics = compute_metrics(concepts, evaluation, base, erased, neighbours)
    # Standard errors over images of the MI estimates, and of the erased/base ratios.
    metrics["stderr"].update(
        {
            "mi_target_base": mi["base"]["forgetting"]["stderr"],
            "mi_target_erased": mi["erased"]["forgetting"]["stderr"],
            "mi_retained_base": mi["base"]["retained"]["stderr"],
            "mi_retained_erased": mi["erased"]["retained"]["stderr"],
            "mi_target_ratio": paired_ratio_stderr(mi_erased["forgetting"], mi_base["forgetting"]),
            "mi_retained_ratio": paired_ratio_stderr(mi_erased["retained"], mi_base["retained"]),
        }
    )
    metrics.update(
        {
            "mi_target_base": mi["base"]["forgetting"]["value"],
            "mi_target_erased": mi["erased"]["forgetting"]["value"],
            "mi_retained_base": mi["base"]["retained"]["value"],
            "mi_retained_erased": mi["erased"]["retained"]["value"],
            "mi_target_ratio": _ratio(mi["erased"]["forgetting"]["value"], mi["base"]["forgetting"]["value"]),
            "mi_retained_ratio": _ratio(mi["erased"]["retained"]["value"], mi["base"]["retained"]["value"]),
            "mi": mi,
            "erase_seconds": record.get("erase_seconds"),
            "forgetting_set_seconds": record.get("forgetting_set_seconds"),
            "erase_peak_memory_mb": record.get("peak_memory_mb"),
            "erase_device": record.get("device"),
            # Includes the base model's images and MI unless a benchmark had them cached.
            "evaluation_seconds": time.perf_counter() - started,
            "evaluation_peak_memory_mb": peak_memory_mb(pipeline.device),
            "evaluation_device": str(pipeline.device),
            "method": record["method"],
            "erased_concepts": record["concepts"],
            "base_model": str(base_source),
            "model_digest": record["model_digest"],
            "evaluation_seed": seed,
        }
    )
    return metrics, base, erased
