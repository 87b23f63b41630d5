"""Loading text-to-image pipelines: the embedded MiniCanvas model or a diffusers directory."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from mimmu.devices import resolve_device, resolve_dtype
from mimmu.errors import MimmuError

logger = logging.getLogger(__name__)

MINICANVAS = "minicanvas"
MINICANVAS_DIR = Path(__file__).resolve().parent / "minicanvas" / "weights" / "pipeline"
# Written beside model_index.json by mimmu: how to complete and sample the pipeline.
MARKER_FILE = "mimmu.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class SamplingDefaults:
    """The sampler settings a model is served with."""

    num_inference_steps: int = 50
    guidance_scale: float = 7.5


def resolve_source(source: str | Path) -> Path:
    """Return the pipeline directory that `source` names, after checking it is one."""
    if isinstance(source, str) and source.strip() == "":
        raise MimmuError(
            "model is empty; pass 'minicanvas', a diffusers pipeline directory or an erased-model directory"
        )
    if str(source) == MINICANVAS:
        return MINICANVAS_DIR
    path = Path(source).expanduser()
    if not path.exists():
        raise MimmuError(
            f"model {str(source)!r} is neither 'minicanvas' nor an existing path; "
            "pass 'minicanvas', a diffusers pipeline directory or an erased-model directory"
        )
    if not path.is_dir() or not ((path / "model_index.json").is_file() or (path / "erasure.json").is_file()):
        raise MimmuError(
            f"{str(path)!r} is neither a diffusers pipeline directory (no model_index.json) nor an erased "
            "model (no erasure.json); pass a directory written by save_pretrained or by `mimmu erase`"
        )
    return path


def read_model_index(path: Path) -> dict:
    """Return the parsed model_index.json of a pipeline directory."""
    try:
        return json.loads((path / "model_index.json").read_text())
    except json.JSONDecodeError as error:
        raise MimmuError(f"{path / 'model_index.json'} is not valid JSON ({error}); re-export the pipeline") from error


def read_marker(path: Path) -> dict:
    """Return mimmu's marker of a pipeline directory, or an empty dict."""
    marker = path / MARKER_FILE
    return json.loads(marker.read_text()) if marker.is_file() else {}


def check_no_pickle(path: Path, components: list[str]) -> None:
    """Raise when a component's only weights are pickle-based (loading a pickle runs code)."""
    for component in components:
        folder = path / component
        if not folder.is_dir():
            continue
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        has_safetensors = any(p.suffix == ".safetensors" for p in folder.iterdir())
        if pickles and not has_safetensors:
            raise MimmuError(
                f"{folder / pickles[0]} is a pickle-based weight file, and loading a pickle runs code; "
                "convert it to safetensors, or pass --allow-pickle (allow_pickle=True) if you trust its source"
            )


def sampling_defaults(pipeline: DiffusionPipeline) -> SamplingDefaults:
    """Return the sampler settings stored with `pipeline`, or Stable Diffusion's usual ones."""
    marker = read_marker(Path(pipeline.name_or_path)) if pipeline.name_or_path else {}
    defaults = SamplingDefaults()
    return SamplingDefaults(
        num_inference_steps=int(marker.get("num_inference_steps", defaults.num_inference_steps)),
        guidance_scale=float(marker.get("guidance_scale", defaults.guidance_scale)),
    )


@contextlib.contextmanager
def _library_warnings_hidden() -> Iterator[None]:
    """Raise the diffusers and transformers log levels to at least ERROR and hide their loading bars in the block.

    Also hides diffusers' FutureWarning that `torch_dtype` will be renamed `dtype`: the old
    name is kept because diffusers releases before the rename accept only it.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    bars = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    # Raise only: a user who set CRITICAL keeps it.
    diffusers_logging.set_verbosity(max(levels[0], logging.ERROR))
    transformers_logging.set_verbosity(max(levels[1], logging.ERROR))
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()


def load_pipeline(
    source: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    allow_pickle: bool = False,
) -> DiffusionPipeline:
    """Load a text-to-image pipeline, offline.

    Args:
        source: "minicanvas" for the embedded model, or a diffusers pipeline directory.
        device: "cpu", "cuda" or "cuda:N"; default CUDA where present, else the CPU.
        dtype: "float32", "float16" or "bfloat16"; default float16 on CUDA, float32 on the CPU.
        allow_pickle: load pickle-based weight files (.bin, .ckpt, ...), which can run
            arbitrary code; without it such files are rejected.
    """
    path = resolve_source(source)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    from mimmu.artifact import is_erased_dir

    if is_erased_dir(path):
        return load_erased(path, None, torch_device, torch_dtype, allow_pickle)
    index = read_model_index(path)
    components = [name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)]
    if not allow_pickle:
        check_no_pickle(path, components)

    overrides: dict[str, object] = {}
    marker = read_marker(path)
    if marker.get("text_encoder_package") and not (path / "text_encoder").is_dir():
        from mimmu.text_encoder import load_text_encoder

        with _library_warnings_hidden():
            tokenizer, text_encoder = load_text_encoder()
        overrides["tokenizer"], overrides["text_encoder"] = tokenizer, text_encoder.to(torch_dtype)
    if "safety_checker" in index:
        # The safety checker blanks flagged images, which would hide what an erasure changed.
        logger.info("loading %s without its safety checker", path)
        overrides.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    # A pipeline with mimmu's own text encoder (MiniCanvas) makes diffusers warn that the
    # encoder is a BertModel, not a CLIPTextModel, and transformers warn about image
    # processors the pipeline does not use. Both are expected there, so they are hidden
    # for such pipelines only; any other model's load warnings reach the user.
    quiet = _library_warnings_hidden() if "text_encoder" in overrides else contextlib.nullcontext()
    try:
        with quiet:
            pipeline = DiffusionPipeline.from_pretrained(
                path,
                torch_dtype=torch_dtype,
                use_safetensors=None if allow_pickle else True,
                local_files_only=True,
                **overrides,
            )
    except (OSError, ValueError) as error:
        raise MimmuError(f"could not load the pipeline in {str(path)!r}: {error}") from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(torch_device)


def load_erased(
    erased: str | Path,
    base: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    allow_pickle: bool = False,
) -> DiffusionPipeline:
    """Load an erased-model folder on top of its base model (the recorded one unless `base` is given).

    The base's digest must match the one recorded at erasure time.
    """
    from mimmu.artifact import apply_weights, check_base, load_erased_weights, model_digest

    record, weights = load_erased_weights(Path(erased))
    base_source = record["base_model"] if base is None else base
    if base is None and base_source != MINICANVAS and not Path(base_source).exists():
        raise MimmuError(
            f"the base model recorded in {str(Path(erased) / 'erasure.json')!r}, {base_source!r}, no longer exists; "
            "put the base pipeline back at that path"
        )
    pipeline = load_pipeline(base_source, device, dtype, allow_pickle)
    check_base(record, model_digest(base_source), str(base_source))
    apply_weights(pipeline, weights)
    pipeline.mimmu_erasure = record
    logger.info("loaded erased model %s (concepts: %s)", erased, ", ".join(record["concepts"]))
    return pipeline
