"""The HTML report of an evaluation: paired image grids and training curves."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from mimmu.generate import make_grid, to_uint8
from mimmu.io import atomic_directory, write_json_atomic

GRID_COLUMNS = 8
GRID_IMAGES = 16
UPSCALE = 3  # MiniCanvas images are 32 x 32; enlarge them so a reader can see them


def _save_grid(images: np.ndarray, path: Path) -> None:
    grid = make_grid(to_uint8(images[:GRID_IMAGES]), columns=GRID_COLUMNS)
    picture = Image.fromarray(grid)
    picture.resize((picture.width * UPSCALE, picture.height * UPSCALE), Image.NEAREST).save(path)


def _save_curve(values: list[float], path: Path, title: str, ylabel: str, x: list[float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(x if x is not None else range(1, len(values) + 1), values)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.set_xlabel("epoch" if x is not None else "step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _neighbour_rows(prompts_of_kind: list[dict], names: set[str]) -> list[int]:
    return [i for i, labels in enumerate(prompts_of_kind) if names & set(labels.values())]


def write_report(out: Path, metrics: dict, base: dict, erased: dict, evaluation: list, training: dict | None) -> Path:
    """Write index.html with base-versus-erased grids (same seeds), curves and the metrics table."""
    with atomic_directory(Path(out)) as staging:
        sections = []
        retained = [e.labels for e in evaluation if e.kind == "retained"]
        neighbours = set(metrics.get("neighbour_drops", {}))
        rows = _neighbour_rows(retained, neighbours)
        for name, title, index in (
            ("forgetting", "Forgetting prompts", None),
            ("retained", "Retained prompts", None),
            ("retained", "Nearest and entangled neighbours", rows),
        ):
            if index is not None and not index:
                continue
            slug = title.lower().replace(" ", "-")
            pick = slice(None) if index is None else index
            _save_grid(base[name].images[pick], staging / f"{slug}-base.png")
            _save_grid(erased[name].images[pick], staging / f"{slug}-erased.png")
            prompts = [base[name].prompts[i] for i in (range(len(base[name].prompts)) if index is None else index)]
            sections.append(
                f"<h2>{html.escape(title)}</h2><p>Same seeds; first {GRID_IMAGES} images.</p>"
                f"<table><tr><th>base</th><th>erased</th></tr><tr><td><img src='{slug}-base.png'></td>"
                f"<td><img src='{slug}-erased.png'></td></tr></table>"
                f"<details><summary>prompts</summary><ol>{''.join(f'<li>{html.escape(p)}</li>' for p in prompts[:GRID_IMAGES])}</ol></details>"
            )
        if training and training.get("losses"):
            _save_curve(training["losses"], staging / "loss.png", "Training loss", "loss")
            sections.append("<h2>Training loss</h2><img src='loss.png'>")
        if training and training.get("mi"):
            epochs = [entry["epoch"] for entry in training["mi"]]
            _save_curve(
                [entry["value"] for entry in training["mi"]], staging / "mi.png", "Forgetting-set MI", "nats", epochs
            )
            sections.append("<h2>Mutual information over training</h2><img src='mi.png'>")
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
        table = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(_format(v))}</td></tr>" for k, v in sorted(scalars.items())
        )
        concepts = html.escape(", ".join(metrics.get("concepts", [])))
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>mimmu evaluation</title>"
            "<style>body{font-family:sans-serif;margin:2em} img{image-rendering:pixelated} td{padding:2px 8px}</style>"
            f"</head><body><h1>Erasure of {concepts}</h1><h2>Metrics</h2><table>{table}</table>{''.join(sections)}</body></html>"
        )
        (staging / "index.html").write_text(page, encoding="utf-8")
        write_json_atomic(staging / "metrics.json", metrics)
    return Path(out) / "index.html"


def _format(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
