"""Prompt sets for erasing concepts: forgetting prompts and anchors, retained and evaluation prompts.

Prompts are built from the MiniCanvas caption templates. Forgetting and retained
prompts come from the training templates, which the model was taught. Evaluation
prompts come from the held-out templates, so an evaluation measures the concept and
not memorised strings. Concepts match as whole words, case-insensitively.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np

from mimmu.concepts import concept_pattern, contains_concept, normalize_concept, remove_concept
from mimmu.errors import MimmuError
from mimmu.minicanvas.captions import HELDOUT_TEMPLATES, SYNONYMS, TRAIN_TEMPLATES, full_templates
from mimmu.minicanvas.render import Labels
from mimmu.minicanvas.vocabulary import ATTRIBUTES, COLORS, OBJECTS, TEXTURES

ANCHORS = ("empty", "context")
RETAINED_PER_FORGETTING = 4  # retained evaluation prompts per forgetting prompt of one concept


@dataclass(frozen=True)
class ForgettingPrompt:
    """A prompt that names `concept`, and its anchor: the empty prompt or the prompt without the concept."""

    prompt: str
    anchor: str
    concept: str


@dataclass(frozen=True)
class EvaluationPrompt:
    """A held-out-template prompt with the labels it names, and what it evaluates."""

    prompt: str
    labels: dict[str, str]
    kind: str  # "forgetting" (names an erased concept) or "retained"
    concept: str  # the erased concept it names, or the retained concept of the erased attribute
    anchor: str = ""  # the prompt with `concept` removed


@dataclass
class PromptSet:
    """Every prompt an erasure and its evaluation use, for one or more concepts."""

    concepts: list[str]
    anchor_mode: str
    forgetting: list[ForgettingPrompt] = field(default_factory=list)
    retained: list[str] = field(default_factory=list)
    evaluation: list[EvaluationPrompt] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return the prompt set as a JSON-ready dict."""
        return asdict(self)


def _all_labels() -> list[Labels]:
    return [Labels(o, c, t) for o, c, t in itertools.product(OBJECTS, COLORS, TEXTURES)]


def vocabulary_prompts() -> list[str]:
    """Return every distinct training caption of the MiniCanvas world, synonyms included."""
    captions = set()
    for labels in _all_labels():
        for template in TRAIN_TEMPLATES:
            captions.add(template.format(labels))
            captions.add(template.format(labels, SYNONYMS))
    return sorted(captions)


def check_concepts(concepts: list[str], prompts: list[str] | None = None) -> list[str]:
    """Return normalised concept names, or raise if one is blank, repeated or named by no prompt."""
    if not concepts:
        raise MimmuError("no concept given; pass at least one concept, e.g. star")
    names = [normalize_concept(c) for c in concepts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MimmuError(f"concept {duplicates[0]!r} is given more than once; pass each concept once")
    prompts = vocabulary_prompts() if prompts is None else prompts
    for name in names:
        if not any(contains_concept(p, name) for p in prompts):
            known = ", ".join(v for values in ATTRIBUTES.values() for v in values)
            raise MimmuError(
                f"concept {name!r} appears in none of the {len(prompts)} prompts built from the "
                f"{len(TRAIN_TEMPLATES)} MiniCanvas training templates; pass one of: {known}"
            )
    return names


def _attribute_value(concept: str) -> tuple[str, str] | None:
    """Return (attribute, value) when `concept` is a vocabulary value or a synonym of one."""
    for attribute, values in ATTRIBUTES.items():
        for value in values:
            if concept == value or SYNONYMS.get(value) == concept:
                return attribute, value
    return None


def vocabulary_value(concept: str) -> tuple[str, str]:
    """Return (attribute, value) of a concept the evaluator grades: a vocabulary value, or a synonym of one.

    "disk" gives ("object", "circle"): the evaluation of an erased synonym prompts with the
    synonym and grades the images as the value it names.
    """
    found = _attribute_value(concept)
    if found is None:
        raise MimmuError(f"concept {concept!r} is not a MiniCanvas attribute value, so it cannot be evaluated")
    return found


def build_forgetting_prompts(
    concepts: list[str], anchor_mode: str, size: int, rng: np.random.Generator
) -> list[ForgettingPrompt]:
    """Draw up to `size` distinct training captions per concept that name it, each with its anchor prompt."""
    if anchor_mode not in ANCHORS:
        raise MimmuError(f"invalid anchor {anchor_mode!r}; expected one of {', '.join(ANCHORS)}")
    if size < 1:
        raise MimmuError(f"forgetting-set size must be at least 1, got {size}")
    prompts = vocabulary_prompts()
    chosen = []
    for concept in concepts:
        candidates = [p for p in prompts if contains_concept(p, concept)]
        # Without replacement, so no prompt repeats; a concept with fewer captions uses them all.
        picks = rng.choice(len(candidates), size=min(size, len(candidates)), replace=False)
        for index in picks:
            prompt = candidates[int(index)]
            anchor = "" if anchor_mode == "empty" else remove_concept(prompt, concept)
            chosen.append(ForgettingPrompt(prompt, anchor, concept))
    return chosen


def build_retained_prompts(concepts: list[str], per_concept: int, rng: np.random.Generator) -> list[str]:
    """Draw training captions stratified over every other vocabulary value, none naming an erased concept."""
    prompts = [p for p in vocabulary_prompts() if not any(contains_concept(p, c) for c in concepts)]
    retained: list[str] = []
    for values in ATTRIBUTES.values():
        for value in values:
            if value in concepts:
                continue
            candidates = [p for p in prompts if contains_concept(p, value)]
            if not candidates:
                continue
            picks = rng.choice(len(candidates), size=min(per_concept, len(candidates)), replace=False)
            retained.extend(candidates[int(i)] for i in picks)
    return list(dict.fromkeys(retained))  # a prompt drawn for two concepts is kept once


def _draw_balanced(options: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Return `count` values that use every option equally often (up to one), in random order."""
    tiled = [options[i % len(options)] for i in range(count)]
    return [tiled[int(i)] for i in rng.permutation(count)]


def build_evaluation_prompts(
    concepts: list[str], size: int, rng: np.random.Generator, retained_size: int | None = None
) -> list[EvaluationPrompt]:
    """Draw held-out-template prompts: `size` naming each erased concept, and `retained_size` retained ones.

    Retained prompts name another value of an erased concept's attribute (so that the
    erased attribute's accuracy on other values, IRA, is measurable) and no erased concept.
    Each attribute's retained values are balanced, so every retained concept gets about
    the same number of images (`retained_size` defaults to RETAINED_PER_FORGETTING * size:
    512 retained prompts give each of 11 objects 46 images, so one flipped image moves its
    accuracy by about 0.02).
    """
    if not concepts:
        raise MimmuError("no concept given to evaluate; pass at least one erased concept")
    if retained_size is None:
        retained_size = RETAINED_PER_FORGETTING * size
    templates = full_templates(HELDOUT_TEMPLATES)
    erased = {c: _attribute_value(c) for c in concepts}
    evaluation: list[EvaluationPrompt] = []

    excluded: dict[str, set[str]] = {}
    for attribute_value in erased.values():
        if attribute_value:
            excluded.setdefault(attribute_value[0], set()).add(attribute_value[1])

    def allowed(attribute: str) -> list[str]:
        return [v for v in ATTRIBUTES[attribute] if v not in excluded.get(attribute, set())]

    for attribute in ATTRIBUTES:
        if not allowed(attribute):
            raise MimmuError(
                f"every {attribute} is erased, so no retained prompt can name one; keep at least one {attribute}"
            )

    def draw_labels(fixed: dict[str, str]) -> Labels:
        values = {}
        for attribute in ATTRIBUTES:
            options = allowed(attribute)
            values[attribute] = fixed.get(attribute) or options[int(rng.integers(len(options)))]
        return Labels(values["object"], values["color"], values["texture"])

    for concept in erased:
        attribute, value = vocabulary_value(concept)
        for index in range(size):
            labels = draw_labels({attribute: value})
            prompt = templates[index % len(templates)].format(labels)
            # An erased synonym is what the prompt names; the images are graded as its value.
            prompt = concept_pattern(value).sub(concept, prompt)
            evaluation.append(
                EvaluationPrompt(prompt, asdict(labels), "forgetting", value, remove_concept(prompt, concept))
            )

    columns = {attribute: _draw_balanced(allowed(attribute), retained_size, rng) for attribute in ATTRIBUTES}
    for index in range(retained_size):
        labels = Labels(columns["object"][index], columns["color"][index], columns["texture"][index])
        attribute = erased[concepts[index % len(concepts)]][0]
        value = getattr(labels, attribute)
        prompt = templates[index % len(templates)].format(labels)
        evaluation.append(EvaluationPrompt(prompt, asdict(labels), "retained", value, remove_concept(prompt, value)))
    return evaluation


def build_prompt_set(
    concepts: list[str],
    anchor_mode: str = "context",
    forgetting_size: int = 128,
    retained_per_concept: int = 4,
    evaluation_size: int = 128,
    seed: int = 0,
) -> PromptSet:
    """Build the full prompt set for erasing `concepts` (already checked by check_concepts)."""
    rng = np.random.default_rng(seed)
    return PromptSet(
        concepts=list(concepts),
        anchor_mode=anchor_mode,
        forgetting=build_forgetting_prompts(concepts, anchor_mode, forgetting_size, rng),
        retained=build_retained_prompts(concepts, retained_per_concept, rng),
        evaluation=build_evaluation_prompts(concepts, evaluation_size, rng),
    )
