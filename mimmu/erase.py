"""One erasure run: prompts, forgetting set, training (or a closed-form edit), and the artifact."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mimmu.artifact import ERASURE_FILE, is_erased_dir, load_erased_weights, model_digest, read_erasure, save_erased
from mimmu.config import EraseConfig
from mimmu.devices import peak_memory_mb
from mimmu.errors import MimmuError
from mimmu.home import state_dir
from mimmu.io import write_json_atomic
from mimmu.loading import MINICANVAS, load_pipeline, resolve_source
from mimmu.output import check_writable, nearest_existing
from mimmu.prompt_sets import PromptSet, build_prompt_set, check_concepts, vocabulary_prompts

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


# Files an erasure writes into its folder. An interrupted run leaves some of them behind
# (in the order erase() writes them), and a finished run leaves all of them.
RESUMABLE = {"checkpoints", "training.json", "prompt_set.json", "weights.safetensors"}
ERASED_FOLDER = RESUMABLE | {ERASURE_FILE}


def check_erase_output(out: Path, overwrite: bool) -> None:
    """Raise unless `out` is new, empty, an interrupted run to resume, or an erased model to overwrite.

    --overwrite replaces an erased model, never a folder of other files: the erasure
    writes into `out` in place, so it would mix its files with them.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MimmuError(f"output path {str(out)!r} is a file; pass a folder path with --out")
    if out.is_dir():
        entries = {p.name for p in out.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
        if is_erased_dir(out) and not overwrite:
            raise MimmuError(f"{str(out)!r} already contains an erased model; pass another --out or add --overwrite")
        if entries - ERASED_FOLDER:
            extra = sorted(entries - ERASED_FOLDER)
            raise MimmuError(
                f"output folder {str(out)!r} contains files an erasure does not write ({', '.join(extra[:3])}"
                f"{', ...' if len(extra) > 3 else ''}); pass a new or empty folder with --out"
            )
    check_writable(nearest_existing(out), out)


def check_prompt_set_matches(prompt_set: PromptSet, concepts: list[str], config: EraseConfig) -> None:
    """Raise unless `prompt_set` is for exactly `concepts`, with `config`'s anchor mode and some forgetting prompts."""
    if sorted(prompt_set.concepts) != sorted(concepts):
        raise MimmuError(
            f"the prompt set is for {prompt_set.concepts}, not {concepts}; pass the prompt set of these concepts"
        )
    if prompt_set.anchor_mode != config.anchor:
        raise MimmuError(
            f"the prompt set has {prompt_set.anchor_mode!r} anchors but the configuration asks for {config.anchor!r}; "
            "build the prompt set with the same anchor mode"
        )
    if not prompt_set.forgetting:
        raise MimmuError("the prompt set has no forgetting prompts; pass one with at least one")


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
    prompt_set: PromptSet | None = None,
) -> EraseResult:
    """Erase `concepts` from the model `source` and write the erased-model folder `out`.

    When `source` is itself an erased model, the new concepts are erased on top of it
    (theta_0 is the current model) and the artifact keeps the original base.
    `prompt_set`, when given, is trained on as it is (a curated set, or the one a pipeline
    validated); otherwise one is drawn from `config` (anchor, forgetting size, seed).
    """
    concepts = check_concepts(concepts, vocabulary_prompts())
    if prompt_set is not None:
        check_prompt_set_matches(prompt_set, concepts, config)
    check_erase_output(out, overwrite)
    path = resolve_source(source)
    previous: dict | None = read_erasure(path) if is_erased_dir(path) else None
    if previous:
        already = sorted(set(concepts) & set(previous["concepts"]))
        if already:
            raise MimmuError(f"concept {already[0]!r} is already erased from {str(source)!r}; pass a new concept")

    current_digest = model_digest(source)
    pipeline = load_pipeline(source, device, dtype, allow_pickle)
    if prompt_set is None:
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
        history = trainer.train(out / "checkpoints", progress)
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
    # erasure.json, written last by save_erased, marks the folder complete.
    write_json_atomic(out / "training.json", {"losses": losses, "mi": mi, "erase_seconds": seconds})
    write_json_atomic(out / "prompt_set.json", prompt_set.to_dict())
    record = save_erased(
        out,
        weights,
        base_model,
        base_digest,
        all_concepts,
        config.method,
        config.to_dict(),
        lineage,
        extra={
            "erase_seconds": seconds,
            "forgetting_set_seconds": forgetting_seconds,
            "device": str(pipeline.device),
            "peak_memory_mb": peak_memory_mb(pipeline.device),
        },
    )
    if (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        logger.info("removed the checkpoints of the finished run from %s", out / "checkpoints")
    logger.info("erased %s in %.1f s and wrote %s", ", ".join(concepts), seconds, out)
    return EraseResult(out, record, losses, mi, seconds, forgetting_seconds)
