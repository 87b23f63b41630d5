"""Grading generated images: which attributes did the evaluator see, and do they match the prompt?"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mimmu.concepts import contains_concept
from mimmu.errors import MimmuError
from mimmu.minicanvas.captions import SYNONYMS
from mimmu.minicanvas.check import images_to_tensor
from mimmu.minicanvas.evaluator import Evaluator
from mimmu.minicanvas.vocabulary import ATTRIBUTES


def named_attributes(prompt: str) -> dict[str, str]:
    """Return the attribute values a prompt names, e.g. {"object": "star", "color": "red"}.

    Synonyms count as their concept ("disk" names "circle"). When a prompt names two
    values of one attribute, the first in vocabulary order wins.
    """
    found: dict[str, str] = {}
    for attribute, values in ATTRIBUTES.items():
        for value in values:
            names = [value] + [synonym for word, synonym in SYNONYMS.items() if word == value]
            if attribute not in found and any(contains_concept(prompt, name) for name in names):
                found[attribute] = value
    return found


def grade_generation(directory: Path, evaluator: Evaluator) -> dict:
    """Classify every image of a `mimmu generate` folder and compare with its prompt."""
    manifest_path = Path(directory) / "manifest.json"
    if not manifest_path.is_file():
        raise MimmuError(f"{str(directory)!r} has no manifest.json; pass a folder written by `mimmu generate`")
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["images"]
    images = np.stack([np.asarray(Image.open(Path(directory) / e["file"]).convert("RGB")) for e in entries])
    if images.shape[1:3] != (32, 32):
        raise MimmuError(f"images are {images.shape[1]}x{images.shape[2]}; the MiniCanvas evaluator grades 32x32")
    predictions = evaluator.classify(images_to_tensor(images.astype(np.float32) / 255.0))

    graded, per_prompt = [], {}
    for index, entry in enumerate(entries):
        labels = {name: ATTRIBUTES[name][int(predictions[name][index])] for name in ATTRIBUTES}
        expected = named_attributes(entry["prompt"])
        matches = {name: labels[name] == value for name, value in expected.items()}
        graded.append({**entry, "labels": labels, "expected": expected, "matches": matches})
        summary = per_prompt.setdefault(entry["prompt"], {"num_images": 0, "correct": {n: 0 for n in expected}})
        summary["num_images"] += 1
        for name, ok in matches.items():
            summary["correct"][name] += int(ok)
    for summary in per_prompt.values():
        summary["accuracy"] = {n: c / summary["num_images"] for n, c in summary.pop("correct").items()}
    return {"directory": str(directory), "images": graded, "prompts": per_prompt}
