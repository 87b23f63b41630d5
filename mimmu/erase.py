"""One erasure run: prompts, forgetting set, training (or a closed-form edit), and the artifact."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mimmu.artifact import is_erased_dir, load_erased_weights, model_digest, read_erasure, save_erased
from mimmu.config import EraseConfig
from mimmu.errors import MimmuError
from mimmu.home import state_dir
from mimmu.io import write_json_atomic
from mimmu.loading import MINICANVAS, load_pipeline, resolve_source
from mimmu.prompt_sets import build_prompt_set, check_concepts, vocabulary_prompts

logger = logging.getLogger(__name__)


@dataclass
class EraseResult:
    """The outputs and measurements of one erasure run."""

    out: Path
    record: dict
    losses: list[float]
    mi: list[dict]
    erase_seconds: float
    forgetting_set_seconds: float


def check_erase_output(out: Path, overwrite: bool) -> None:
    """Raise unless `out` is new, empty, contains checkpoints to resume from, or may be overwritten."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MimmuError(f"output path {str(out)!r} is a file; pass a folder path with --out")
    if not out.is_dir() or overwrite:
        return
    if is_erased_dir(out):
        raise MimmuError(f"{str(out)!r} already contains an erased model; pass another --out or add --overwrite")
    entries = {p.name for p in out.iterdir()}
    if entries - {"checkpoints", "weights.safetensors", ".weights.safetensors.tmp"}:
        raise MimmuError(f"output folder {str(out)!r} is not empty; pass another --out or add --overwrite")


def erase(
    source: str | Path,
    concepts: list[str],
    config: EraseConfig,
    out: Path,
    device: str | None = None,
    dtype: str | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> EraseResult:
    """Erase `concepts` from the model `source` and write the erased-model folder `out`.

    When `source` is itself an erased model, the new concepts are erased on top of it
    (theta_0 is the current model) and the artifact keeps the original base.
    """
    concepts = check_concepts(concepts, vocabulary_prompts())
    check_erase_output(out, overwrite)
    path = resolve_source(source)
    previous: dict | None = read_erasure(path) if is_erased_dir(path) else None
    if previous:
        already = sorted(set(concepts) & set(previous["concepts"]))
        if already:
            raise MimmuError(f"concept {already[0]!r} is already erased from {str(source)!r}; pass a new concept")

    current_digest = model_digest(source)
    pipeline = load_pipeline(source, device, dtype, allow_pickle)
    prompt_set = build_prompt_set(concepts, config.anchor, config.forgetting_size, seed=config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    forgetting_seconds = 0.0
    mi: list[dict] = []
    if config.method == "uce":
        from mimmu.baselines.uce import uce_edit

        # UCE maps each concept's own tokens to those of the empty prompt, whatever the anchor mode.
        weights, seconds = uce_edit(pipeline, concepts, [""] * len(concepts), prompt_set.retained, config.uce_lambda)
        losses: list[float] = []
    elif config.method == "esd":
        from mimmu.baselines.esd import EsdTrainer

        trainer = EsdTrainer(pipeline, prompt_set.forgetting, config)
        steps = config.epochs * -(-len(prompt_set.forgetting) // config.batch_size)
        history = trainer.train(steps, progress)
        weights, seconds, losses = trainer.changed_weights(), history.seconds, history.losses
    else:
        from mimmu.forgetting_set import build_forgetting_set
        from mimmu.trainer import MimmuTrainer

        started = time.perf_counter()
        forgetting_set = build_forgetting_set(
            pipeline,
            prompt_set.forgetting,
            current_digest,
            state_dir() / "forgetting_sets",
            config.seed,
            progress=progress,
            anchor_images=config.anchor_images,
        )
        forgetting_seconds = time.perf_counter() - started
        trainer = MimmuTrainer(pipeline, forgetting_set, config)
        history = trainer.train(out / "checkpoints", progress)
        weights, seconds, losses, mi = trainer.changed_weights(), history.seconds, history.losses, history.mi

    base_model = str(source) if str(source) == MINICANVAS else str(path.resolve())
    base_digest = current_digest
    all_concepts = list(concepts)
    lineage: list[dict] = []
    if previous:
        _, previous_weights = load_erased_weights(path)
        weights = {**previous_weights, **weights}
        base_model, base_digest = previous["base_model"], previous["base_digest"]
        all_concepts = previous["concepts"] + concepts
        lineage = previous["history"] + [{k: previous[k] for k in ("concepts", "method", "config", "model_digest")}]
    record = save_erased(
        out,
        weights,
        base_model,
        base_digest,
        all_concepts,
        config.method,
        config.to_dict(),
        lineage,
        extra={"erase_seconds": seconds, "forgetting_set_seconds": forgetting_seconds},
    )
    write_json_atomic(out / "training.json", {"losses": losses, "mi": mi, "erase_seconds": seconds})
    write_json_atomic(out / "prompt_set.json", prompt_set.to_dict())
    if (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        logger.info("removed the checkpoints of the finished run from %s", out / "checkpoints")
    logger.info("erased %s in %.1f s and wrote %s", ", ".join(concepts), seconds, out)
    return EraseResult(out, record, losses, mi, seconds, forgetting_seconds)
