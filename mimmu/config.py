"""Typed configuration of an erasure, validated when built and saved beside the weights."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

from mimmu.errors import MimmuError
from mimmu.prompt_sets import ANCHORS
from mimmu.schedule import TIMESTEP_SAMPLING

METHODS = ("mimmu", "esd", "uce")
# Seeds are whole numbers from 0 to MAX_SEED. Image i of a run uses seed + i, and torch
# generators take signed 64-bit seeds, so this bound leaves room for any count of images.
MAX_SEED = 2**32 - 1
TRAINABLE_SETS = ("kv", "attn2", "lora_kv", "tokens", "kv_tokens")
OPTIMIZERS = ("adam", "sgd")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
# Defaults that differ by method: a field left as None takes its method's value here.
# MiM-MU's were chosen by the benchmark (docs/benchmarks.md). ESD-x keeps 60 epochs, i.e.
# 120 steps of batch 32 on 64 prompts, and trains all of cross-attention as published. UCE
# edits to_k and to_v in closed form and ignores the other four.
METHOD_DEFAULTS = {
    "mimmu": {
        "trainable": "tokens",
        "preserve_anchors": 0.995,
        "anchor_images": None,  # by trainable set: MIMMU_ANCHOR_IMAGES
        "epochs": 45,
        "learning_rate": 1.2e-3,
    },
    "esd": {"trainable": "attn2", "preserve_anchors": 0.0, "anchor_images": False, "epochs": 60, "learning_rate": 1e-3},
    "uce": {"trainable": "kv", "preserve_anchors": 0.0, "anchor_images": False, "epochs": 60, "learning_rate": 1e-3},
}


# Anchor images helped the UNet edits, which had silenced the concept only on its own
# images. The token rows meet every target without them in half the time
# (docs/benchmarks.md, "Token rows"), so MiM-MU's default depends on what trains.
MIMMU_ANCHOR_IMAGES = {"tokens": False, "kv": True, "kv_tokens": True, "attn2": True, "lora_kv": True}


def _fix(name: str) -> str:
    """Return the fix for an invalid setting, naming its command-line option (mimmu erase) too."""
    return f"pass another value of {name} (option --{name.replace('_', '-')})"


@dataclass(frozen=True)
class EraseConfig:
    """Every choice of an erasure run. Defaults are the ones the benchmark selected.

    Attributes:
        method: "mimmu", "esd" (ESD-x) or "uce".
        anchor: "context" (the prompt without the concept) or "empty" (the empty prompt).
        timestep_sampling: "log_snr", "uniform_weighted" or "uniform" (see mimmu.schedule).
        trainable: "kv" (attn2.to_k and attn2.to_v), "attn2" (all cross-attention),
            "lora_kv" (a low-rank adapter on to_k and to_v), "tokens" (the input embedding
            rows of the concepts' own word pieces in the text encoder; see
            mimmu.concept_tokens) or "kv_tokens" (both "kv" and "tokens"). A choice for MiM-MU only: None
            (the default) means "tokens" for MiM-MU, the set that met every target of the
            benchmark (docs/benchmarks.md), and "kv" for UCE and "attn2" for ESD-x, the
            weights those change as published.
        lora_rank: rank of the adapter when trainable is "lora_kv".
        preserve_null: project every update of to_k and to_v so that the empty prompt's
            keys and values stay exactly unchanged. With trainable "kv" or "lora_kv" the
            unconditional prediction then stays unchanged too; with "attn2" the unprojected
            to_q and to_out can still move it.
            Off by default: on MiniCanvas it helps star but lowers IRA and PSNR on red (docs/benchmarks.md).
        optimizer: "adam", or "sgd" (with momentum 0.9). With trainable "kv" or "attn2",
            plain gradient steps keep every update of to_k and to_v inside the span of the
            forgetting prompts' token states, so a prompt whose token states are orthogonal
            to them keeps its keys and values (unless preserve_anchors or preserve_null
            projects the updates, which moves them out of that span). Adam's per-weight
            scaling breaks that property. The span is nearly the whole space once there
            are a few dozen prompts.
            MiM-MU only; ESD-x keeps Adam as published.
        anchor_images: also train on one image of each anchor prompt (see mimmu.forgetting_set).
            The concept prompt must then match the anchor prediction on the images the erased
            model will generate, not only on the concept's own images, which is where most of
            the concept's remaining MI sits without them. Doubles the steps of an epoch.
            MiM-MU only. None (the default) means off for ESD-x and UCE, and for MiM-MU
            off with trainable "tokens" and on with the UNet sets (MIMMU_ANCHOR_IMAGES).
        preserve_anchors: MiM-MU's anchor preservation, a share of energy in [0, 1). The
            token states of the anchor prompts and the empty prompt (every position) are
            decomposed into top right singular vectors (not centred). Every update of to_k and
            to_v is projected away from the fewest of them that hold this share of the states'
            squared norm. The prompts the concept is mapped to then nearly keep their keys
            and values, and on concept prompts the update acts on what the concept adds.
            0 turns it off. None (the default) means 0.995 for MiM-MU and 0 for ESD-x and
            UCE, which do not use it. Uses no retained prompts.
            NOTE: 0.995 was chosen on MiniCanvas's MiniLM encoder; other text encoders
            may need another share.
        forgetting_size: forgetting prompts per concept (one latent each, two with anchor_images).
        epochs: passes over the forgetting set (MiM-MU); ESD-x runs epochs * ceil(forgetting_size
            / batch_size) steps. None means 45 for MiM-MU and 60 for ESD-x.
        batch_size: latents per optimisation step.
        learning_rate: learning rate of the optimizer (Adam unless optimizer is "sgd") for UNet
            weights. None means 1.2e-3 for MiM-MU and 1e-3 for ESD-x.
        token_learning_rate: learning rate of the concepts' input token embeddings, when
            trainable is "tokens" or "kv_tokens". MiM-MU only.
        learning_rate_schedule: "constant", or "cosine", which decays the rate to 0 over the
            run (mimmu.trainer.learning_rate_at), for both rates. MiM-MU only. Cosine did not lower the
            remaining MI on MiniCanvas (docs/benchmarks.md).
        mi_tolerance: stop early once the forgetting set's estimated MI, in nats, is below
            this; 0 disables early stopping.
        mi_check_every: epochs between MI estimates for early stopping and the MI curve.
        esd_eta: negative-guidance strength of ESD-x (1 as published, 0 for the
            unconditional target).
        esd_sampling_steps: DDIM steps of ESD-x's on-policy sampling of x_t.
        uce_lambda: ridge term of UCE's closed-form edit.
        checkpoint_every: epochs between checkpoints (0 disables them).
        seed: seed of prompt drawing, forgetting-set noise and training.

    The fields whose default is None are resolved from METHOD_DEFAULTS when the configuration
    is built, so dataclasses.replace(config, method="esd") keeps MiM-MU's values and is
    rejected; pass those fields as None with it.
    """

    method: str = "mimmu"
    anchor: str = "context"
    timestep_sampling: str = "log_snr"
    trainable: str | None = None
    lora_rank: int = 4
    preserve_null: bool = False
    optimizer: str = "adam"
    anchor_images: bool | None = None
    preserve_anchors: float | None = None
    forgetting_size: int = 64
    epochs: int | None = None
    batch_size: int = 32
    learning_rate: float | None = None
    token_learning_rate: float = 1e-2
    learning_rate_schedule: str = "constant"
    mi_tolerance: float = 0.0
    mi_check_every: int = 9
    esd_eta: float = 1.0
    esd_sampling_steps: int = 20
    uce_lambda: float = 0.5
    checkpoint_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MimmuError(f"invalid method {self.method!r}; expected one of {', '.join(METHODS)}")
        for name, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, name) is None:  # the method's default
                object.__setattr__(self, name, value)
        if self.anchor_images is None and self.trainable in MIMMU_ANCHOR_IMAGES:
            object.__setattr__(self, "anchor_images", MIMMU_ANCHOR_IMAGES[self.trainable])
        choices = {
            "anchor": ANCHORS,
            "timestep_sampling": TIMESTEP_SAMPLING,
            "trainable": TRAINABLE_SETS,
            "optimizer": OPTIMIZERS,
            "learning_rate_schedule": LEARNING_RATE_SCHEDULES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise MimmuError(f"invalid {name} {value!r}; expected one of {', '.join(allowed)}")
        published = METHOD_DEFAULTS[self.method]["trainable"]
        if self.method != "mimmu" and self.trainable != published:
            raise MimmuError(
                f"trainable {self.trainable!r} does not apply to method {self.method!r}, which changes "
                f"{published!r} as published; leave --trainable out for {self.method}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise MimmuError(f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}; pass e.g. --seed 0")
        if not isinstance(self.anchor_images, bool):
            raise MimmuError(f"anchor_images must be true or false, got {self.anchor_images!r}; pass a boolean")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int):
            raise MimmuError(f"epochs must be a whole number, got {self.epochs!r}; pass an integer such as 45")
        minimums = {"lora_rank": 1, "forgetting_size": 1, "batch_size": 1, "mi_check_every": 1, "esd_sampling_steps": 2}
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise MimmuError(f"{name} must be at least {minimum}, got {getattr(self, name)}; {_fix(name)}")
        for name in ("epochs", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise MimmuError(f"{name} must be 0 or more, got {getattr(self, name)}; {_fix(name)}")
        for name in ("learning_rate", "token_learning_rate", "mi_tolerance", "esd_eta", "uce_lambda"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise MimmuError(f"{name} must be a finite number of at least 0, got {value}; {_fix(name)}")
        if self.method == "uce" and self.uce_lambda == 0:
            raise MimmuError(
                "uce_lambda must be above 0: without the ridge term UCE's system can be singular; pass e.g. 0.5"
            )
        for name in ("learning_rate", "token_learning_rate"):  # 1 and 1.0 give one digest
            object.__setattr__(self, name, float(getattr(self, name)))
        share = self.preserve_anchors
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise MimmuError(
                f"preserve_anchors must be a number at least 0 and below 1, got {share!r}; "
                "it is a share of the anchor prompts' token-state energy, e.g. 0.995, or 0 to turn it off"
            )
        object.__setattr__(self, "preserve_anchors", float(share))  # 0 and 0.0 give one digest
        mimmu_only = {
            "optimizer": self.optimizer != "adam",
            "learning_rate_schedule": self.learning_rate_schedule != "constant",
            "token_learning_rate": self.token_learning_rate != EraseConfig.token_learning_rate,
            "anchor_images": self.anchor_images,
            "preserve_null": self.preserve_null,
            "preserve_anchors": self.preserve_anchors > 0,
        }
        changed = [name for name, differs in mimmu_only.items() if differs]
        if self.method != "mimmu" and changed:
            raise MimmuError(
                f"{', '.join(changed)} {'applies' if len(changed) == 1 else 'apply'} to method 'mimmu' only, not "
                f"{self.method!r}; for {self.method} keep optimizer adam, learning_rate_schedule constant, "
                f"token_learning_rate {EraseConfig.token_learning_rate}, anchor_images false, preserve_null false "
                "and preserve_anchors 0"
            )
        rate = "token_learning_rate" if self.trainable == "tokens" else "learning_rate"
        if getattr(self, rate) == 0 and self.method != "uce" and self.epochs > 0:
            raise MimmuError(f"{rate} is 0, so training would change nothing; pass a positive rate or --epochs 0")

    def to_dict(self) -> dict:
        """Return the configuration as a JSON-ready dict."""
        return asdict(self)

    def digest(self) -> str:
        """Return a short digest that changes with any field (checkpoints are valid only for one)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, payload: dict) -> EraseConfig:
        """Build a configuration from a dict, rejecting unknown keys."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - allowed)
        if unknown:
            raise MimmuError(f"unknown erasure settings {unknown}; allowed: {sorted(allowed)}")
        return cls(**payload)
