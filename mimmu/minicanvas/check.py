"""Quality gates of the MiniCanvas world: is the evaluator right, does the base model draw well?

A base model that draws concepts poorly cannot measure erasure, because an erased
concept and a badly drawn one look alike to the evaluator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline

from mimmu.generate import GenerationRequest, generate
from mimmu.minicanvas.captions import HELDOUT_TEMPLATES, full_templates
from mimmu.minicanvas.dataset import random_labels, render_set
from mimmu.minicanvas.evaluator import Evaluator, evaluator_accuracy
from mimmu.minicanvas.vocabulary import ATTRIBUTES

EVALUATOR_DIR = Path(__file__).resolve().parent / "weights" / "evaluator"

# Seeds of the held-out renders and generations; the training recipes use seeds below 20000.
HELDOUT_RENDER_SEED = 777_001
HELDOUT_GENERATION_SEED = 777_002

EVALUATOR_GATE = {"object": 0.99, "color": 0.99, "texture": 0.99}
BASE_GATE = {"object": 0.90, "color": 0.90, "texture": 0.80}


def load_evaluator(directory: Path = EVALUATOR_DIR) -> Evaluator:
    """Load the MiniCanvas evaluator (CPU, eval mode)."""
    return Evaluator.load(directory)


def binomial_stderr(rate: float, count: int) -> float:
    """Return the standard error sqrt(p (1 - p) / n) of a rate measured on `count` samples."""
    return math.sqrt(rate * (1.0 - rate) / count) if count else float("nan")


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Convert float images (N, H, W, 3) in [0, 1] to the evaluator's input (N, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def _report(accuracy: dict[str, float], count: int, gate: dict[str, float]) -> dict:
    return {
        "accuracy": accuracy,
        "stderr": {name: binomial_stderr(value, count) for name, value in accuracy.items()},
        "num_samples": count,
        "gate": gate,
        "passed": all(accuracy[name] >= gate[name] for name in gate),
    }


def run_check(
    pipeline: DiffusionPipeline,
    evaluator: Evaluator,
    num_renders: int = 2000,
    num_generations: int = 512,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Measure the evaluator on held-out renders and the base model on held-out-template prompts."""
    renders = render_set(num_renders, HELDOUT_RENDER_SEED, progress, "render held-out")
    evaluator_report = _report(
        evaluator_accuracy(evaluator, renders.images, renders.targets), num_renders, EVALUATOR_GATE
    )

    rng = np.random.default_rng(HELDOUT_GENERATION_SEED)
    labels = random_labels(num_generations, rng)
    templates = full_templates(HELDOUT_TEMPLATES)
    prompts = [templates[i % len(templates)].format(item) for i, item in enumerate(labels)]
    seeds = [HELDOUT_GENERATION_SEED + i for i in range(num_generations)]
    images = generate(pipeline, GenerationRequest(prompts, seeds, batch_size=batch_size), progress)
    targets = torch.tensor([item.indices() for item in labels]).reshape(-1, len(ATTRIBUTES))
    base_report = _report(evaluator_accuracy(evaluator, images_to_tensor(images), targets), num_generations, BASE_GATE)

    return {
        "evaluator_accuracy": evaluator_report["accuracy"],
        "evaluator_stderr": evaluator_report["stderr"],
        "evaluator_num_samples": num_renders,
        "base_accuracy": base_report["accuracy"],
        "base_stderr": base_report["stderr"],
        "base_num_samples": num_generations,
        "gates": {
            "evaluator": {"minimum": EVALUATOR_GATE, "passed": evaluator_report["passed"]},
            "base": {"minimum": BASE_GATE, "passed": base_report["passed"]},
        },
        "passed": evaluator_report["passed"] and base_report["passed"],
        "templates": [t.pattern for t in templates],
    }
