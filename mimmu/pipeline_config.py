"""Typed parameters of the erase-concept pipeline, read from the `pipeline` section of params.yaml."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from mimmu.config import EraseConfig
from mimmu.errors import MimmuError
from mimmu.validation import GATES


@dataclass(frozen=True)
class PipelineConfig:
    """Erasure settings, evaluation size and gates of one pipeline run."""

    erase: EraseConfig = field(default_factory=EraseConfig)
    concept: str = "star"  # the concept the DVC stages erase; flows take theirs as an argument
    # Forgetting prompts of the evaluation that the gates judge (retained prompts: four times
    # as many). 512 gives 171 to 293 images per retained concept, so one image moves a drop
    # by at most 0.006. With 128 it moves it by up to 0.022.
    evaluation_prompts: int = 512
    evaluation_seed: int = 1000
    gates: dict[str, float] = field(
        default_factory=lambda: {
            "ee_min": 0.9,
            "ira_drop_max": 0.02,
            "cra_drop_max": 0.02,
            "paired_psnr_db_min": 25.0,
            "worst_retained_max": 0.05,
        }
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.gates) - set(GATES))
        if unknown:
            raise MimmuError(f"unknown gates {unknown} in params.yaml; known gates: {sorted(GATES)}")
        if self.evaluation_prompts < 1:
            raise MimmuError(f"evaluation_prompts must be at least 1, got {self.evaluation_prompts}")

    def with_epochs(self, epochs: int | None) -> PipelineConfig:
        """Return a copy whose erasure runs `epochs` epochs (None keeps the configured number)."""
        return self if epochs is None else replace(self, erase=replace(self.erase, epochs=epochs))

    def to_dict(self) -> dict:
        """Return the configuration as a JSON-ready dict."""
        return asdict(self)


def load_pipeline_config(path: Path | str = "params.yaml") -> PipelineConfig:
    """Read the `pipeline` section of a params file; a missing file or section gives the defaults."""
    path = Path(path)
    if not path.is_file():
        return PipelineConfig()
    section = (yaml.safe_load(path.read_text()) or {}).get("pipeline") or {}
    allowed = {"concept", "erase", "evaluation_prompts", "evaluation_seed", "gates"}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise MimmuError(f"{path}: unknown keys {unknown} in 'pipeline'; allowed: {', '.join(sorted(allowed))}")
    defaults = PipelineConfig()
    return PipelineConfig(
        erase=EraseConfig.from_dict(section.get("erase") or {}),
        concept=str(section.get("concept", defaults.concept)),
        evaluation_prompts=int(section.get("evaluation_prompts", defaults.evaluation_prompts)),
        evaluation_seed=int(section.get("evaluation_seed", defaults.evaluation_seed)),
        gates={k: float(v) for k, v in (section.get("gates") or defaults.gates).items()},
    )
