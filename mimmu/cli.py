"""The `mimmu` command-line program."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from mimmu.config import MAX_SEED
from mimmu.errors import MimmuError

logger = logging.getLogger("mimmu")


# The fix for each system error a user can act on, by errno.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free space on that disk or write elsewhere (--out, MIMMU_HOME), then rerun; an interrupted erasure resumes",
    errno.EDQUOT: "free space within your quota or write elsewhere, then rerun",
    errno.EACCES: "write somewhere you have permission to, or fix the permissions",
    errno.EPERM: "write somewhere you have permission to, or fix the permissions",
    errno.EROFS: "that file system is read-only; write elsewhere",
    errno.ENOENT: "the file or folder is missing; check the path",
}


def _int_at_least(minimum: int, maximum: int | None = None):
    """Return an argparse type that accepts whole numbers from `minimum` to `maximum` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0, MAX_SEED)


def _seed_list(text: str) -> list[int]:
    from mimmu.benchmark import check_seeds

    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed list {text!r}; pass whole numbers, e.g. 0,1,2") from None
    try:
        check_seeds(seeds)
    except MimmuError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return seeds


def _energy_share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return value


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="minicanvas",
        help="'minicanvas' (the embedded model), a diffusers pipeline folder, or a folder written by `mimmu erase`",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if present, else cpu)")
    parser.add_argument(
        "--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on cpu)"
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load pickle-based weight files (.bin, .ckpt); a pickle can run code, so only for trusted files",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="mimmu", description="Erase concepts from text-to-image diffusion models.")
    parser.add_argument("--quiet", action="store_true", help="hide progress bars and info logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate", help="generate images for prompts", description="Generate PNGs, a grid and a JSON manifest."
    )
    _add_model_options(generate)
    generate.add_argument("--prompt", action="append", default=[], help="a prompt; repeat for several")
    generate.add_argument("--num-images", type=_positive_int, default=4, help="images per prompt (default 4)")
    generate.add_argument("--seed", type=_seed, default=0, help="seed of the first image; image j uses seed + j")
    generate.add_argument("--steps", type=_positive_int, default=None, help="sampler steps (default: the model's)")
    generate.add_argument(
        "--guidance-scale", type=float, default=None, help="classifier-free guidance scale (default: the model's)"
    )
    generate.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default 64)")
    generate.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty)")
    generate.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")

    _add_erasure_commands(commands)

    registry = commands.add_parser(
        "registry", help="the model registry", description="Inspect the MLflow model registry."
    )
    registry_commands = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    status = registry_commands.add_parser(
        "status",
        help="show the production and candidate versions",
        description="Print the registered model and, for production and candidate, version, erased concepts and gates.",
    )
    status.add_argument(
        "--model", default="minicanvas", help="base model whose registered model to show (default minicanvas)"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    audit = commands.add_parser(
        "audit", help="the audit log of registry decisions", description="Check the hash chain of the audit log."
    )
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_commands.add_parser(
        "verify",
        help="check that no record was altered",
        description="Recompute the hash chain of the audit log and, when an S3 copy is configured, "
        "check the copy's chain and that it equals the local log.",
    )
    verify.add_argument(
        "--log", type=Path, default=None, help="audit log file (default $MIMMU_HOME/audit/decisions.jsonl)"
    )
    remote = verify.add_mutually_exclusive_group()
    remote.add_argument(
        "--s3",
        metavar="URI",
        default=None,
        help="s3://BUCKET/PREFIX that contains the copy (default $MIMMU_AUDIT_S3_URI). No copy is checked when neither is set.",
    )
    remote.add_argument("--local-only", action="store_true", help="check the local log only, even when a copy is set")

    minicanvas = commands.add_parser(
        "minicanvas",
        help="the embedded MiniCanvas world",
        description="Check or rebuild the embedded MiniCanvas model.",
    )
    minicanvas_commands = minicanvas.add_subparsers(dest="minicanvas_command", required=True, metavar="COMMAND")
    check = minicanvas_commands.add_parser(
        "check",
        help="measure the evaluator and the base model against the quality gates",
        description="Grade held-out renders and base-model generations; exit 1 if a gate fails.",
    )
    _add_model_options(check)
    check.add_argument("--json", type=Path, required=True, help="where to write the JSON report")
    check.add_argument(
        "--num-renders", type=_positive_int, default=2000, help="held-out renders for the evaluator (default 2000)"
    )
    check.add_argument(
        "--num-generations", type=_positive_int, default=512, help="generated images for the base model (default 512)"
    )
    check.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default 64)")

    grade = minicanvas_commands.add_parser(
        "grade",
        help="classify the images of a `mimmu generate` folder",
        description="Label every image with the evaluator and compare with the attributes its prompt names.",
    )
    grade.add_argument("directory", type=Path, help="a folder written by `mimmu generate`")
    grade.add_argument("--json", type=Path, required=True, help="where to write the JSON grades")

    train = minicanvas_commands.add_parser(
        "train",
        help="retrain one MiniCanvas component",
        description="Train the evaluator, VAE or UNet from params.yaml.",
    )
    train.add_argument("component", choices=["evaluator", "vae", "unet"], help="what to train")
    train.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default params.yaml)")
    train.add_argument("--weights", type=Path, default=None, help="weights folder (default: the package's)")
    train.add_argument("--metrics", type=Path, default=None, help="where to write the training metrics JSON")
    return parser


def _add_erase_options(parser: argparse.ArgumentParser) -> None:
    from mimmu.config import LEARNING_RATE_SCHEDULES, METHOD_DEFAULTS, METHODS, OPTIMIZERS, TRAINABLE_SETS, EraseConfig
    from mimmu.prompt_sets import ANCHORS
    from mimmu.schedule import TIMESTEP_SAMPLING

    defaults = EraseConfig()
    mimmu_defaults, esd_defaults = METHOD_DEFAULTS["mimmu"], METHOD_DEFAULTS["esd"]
    parser.add_argument(
        "--method", choices=METHODS, default=defaults.method, help=f"erasure method (default {defaults.method})"
    )
    parser.add_argument(
        "--anchor",
        choices=ANCHORS,
        default=defaults.anchor,
        help=f"anchor prompt: the prompt without the concept (context) or the empty prompt (default {defaults.anchor})",
    )
    parser.add_argument(
        "--timestep-sampling",
        choices=TIMESTEP_SAMPLING,
        default=defaults.timestep_sampling,
        help=f"timestep proposal and weights (default {defaults.timestep_sampling})",
    )
    parser.add_argument(
        "--trainable",
        choices=TRAINABLE_SETS,
        default=None,
        help="mimmu only: trained weights, kv (attn2.to_k and to_v), attn2 (all cross-attention), lora_kv "
        "(a low-rank adapter on to_k and to_v), tokens (the text encoder's input embeddings of the concept's "
        "own word pieces) or kv_tokens (kv and tokens) "
        f"(default {mimmu_defaults['trainable']}; esd trains attn2 and uce edits kv, as published)",
    )
    parser.add_argument(
        "--lora-rank",
        type=_positive_int,
        default=defaults.lora_rank,
        help=f"adapter rank for --trainable lora_kv (default {defaults.lora_rank})",
    )
    parser.add_argument(
        "--preserve-null",
        action=argparse.BooleanOptionalAction,
        default=defaults.preserve_null,
        help="project updates of to_k and to_v away from the empty prompt's token states (default: off)",
    )
    parser.add_argument(
        "--preserve-anchors",
        type=_energy_share,
        default=None,
        metavar="SHARE",
        help="mimmu only: keep updates of to_k and to_v off the principal directions that hold this share "
        "(0 to below 1) of the anchor prompts' token-state energy, so the prompts the concept is mapped to keep "
        f"their keys and values; 0 turns it off (default {mimmu_defaults['preserve_anchors']} for mimmu, 0 otherwise)",
    )
    parser.add_argument(
        "--anchor-images",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mimmu only: also train the concept prompt on an image of each anchor prompt (same seed), "
        "which doubles the steps of an epoch (default: on for mimmu with a UNet --trainable, off with tokens "
        "and for esd and uce)",
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=defaults.optimizer,
        help="optimizer of MiM-MU. With sgd, updates of to_k and to_v stay in the span of the forgetting "
        f"prompts' token states (default {defaults.optimizer})",
    )
    parser.add_argument(
        "--forgetting-size",
        type=_positive_int,
        default=defaults.forgetting_size,
        help=f"forgetting prompts (one latent each) per concept (default {defaults.forgetting_size})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the forgetting set; ESD-x runs epochs x ceil(forgetting size / batch size) steps "
        f"(default {mimmu_defaults['epochs']} for mimmu, {esd_defaults['epochs']} for esd)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help=f"latents per step (default {defaults.batch_size})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help=f"learning rate of the UNet weights (default {mimmu_defaults['learning_rate']} for mimmu, "
        f"{esd_defaults['learning_rate']} for esd)",
    )
    parser.add_argument(
        "--token-learning-rate",
        type=float,
        default=defaults.token_learning_rate,
        help="mimmu only: learning rate of the concept's input token embeddings with --trainable tokens or "
        f"kv_tokens (default {defaults.token_learning_rate})",
    )
    parser.add_argument(
        "--learning-rate-schedule",
        choices=LEARNING_RATE_SCHEDULES,
        default=defaults.learning_rate_schedule,
        help="mimmu only: constant, or cosine decay from --learning-rate to 0 over the run "
        f"(default {defaults.learning_rate_schedule})",
    )
    parser.add_argument(
        "--mi-tolerance",
        type=float,
        default=defaults.mi_tolerance,
        help="stop early when the forgetting-set MI falls below this many nats (default 0: off)",
    )
    parser.add_argument(
        "--mi-check-every",
        type=_positive_int,
        default=defaults.mi_check_every,
        help=f"epochs between MI estimates (default {defaults.mi_check_every})",
    )
    parser.add_argument(
        "--esd-eta",
        type=float,
        default=defaults.esd_eta,
        help=f"ESD-x negative guidance strength (default {defaults.esd_eta})",
    )
    parser.add_argument(
        "--esd-sampling-steps",
        type=_positive_int,
        default=defaults.esd_sampling_steps,
        help="DDIM steps of ESD-x's on-policy sampling of the noisy latents, at least 2 "
        f"(default {defaults.esd_sampling_steps})",
    )
    parser.add_argument(
        "--uce-lambda", type=float, default=defaults.uce_lambda, help=f"UCE ridge term (default {defaults.uce_lambda})"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        help=f"epochs between checkpoints, 0 for none (default {defaults.checkpoint_every})",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=defaults.seed,
        help=f"seed of prompts, forgetting set and training (default {defaults.seed})",
    )


def _add_erasure_commands(commands) -> None:
    erase = commands.add_parser(
        "erase",
        help="erase concepts from a model",
        description="Erase one or more concepts and write an erased-model folder.",
    )
    _add_model_options(erase)
    erase.add_argument(
        "--concept",
        action="append",
        default=[],
        help="concept to erase, e.g. 'star' or 'lightning bolt'; repeat for several",
    )
    _add_erase_options(erase)
    erase.add_argument("--out", type=Path, required=True, help="erased-model folder; an interrupted run in it resumes")
    erase.add_argument("--overwrite", action="store_true", help="replace an existing erased model in --out")

    evaluate = commands.add_parser(
        "evaluate",
        help="measure an erased model against its base",
        description="Generate paired images from base and erased models and compute every metric.",
    )
    _add_model_options(evaluate)
    evaluate.add_argument("--erased", type=Path, required=True, help="erased-model folder written by `mimmu erase`")
    evaluate.add_argument(
        "--concept", action="append", default=[], help="erased concept to evaluate (default: all it erased)"
    )
    evaluate.add_argument("--json", type=Path, required=True, help="where to write the metrics JSON")
    evaluate.add_argument(
        "--report", type=Path, default=None, help="folder for the HTML report with image grids and curves"
    )
    evaluate.add_argument(
        "--num-prompts",
        type=_positive_int,
        default=128,
        help="forgetting prompts per erased concept; retained prompts are four times as many (default 128)",
    )
    evaluate.add_argument(
        "--mi-images",
        type=_int_at_least(2),
        default=64,
        metavar="N",
        help="images per MI estimate, split evenly between erased concepts and at most the prompts of each kind. "
        "More images give smaller standard errors (default 64)",
    )
    evaluate.add_argument(
        "--seed", type=_seed, default=1000, help="seed of evaluation prompts and images (default 1000)"
    )
    evaluate.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default 64)")

    mi = commands.add_parser(
        "mi",
        help="estimate mutual information between a prompt and its images",
        description="Estimate i(x; c) in nats, with its standard error, on images the model generates for the prompt.",
    )
    _add_model_options(mi)
    mi.add_argument("--prompt", required=True, help="the prompt c")
    mi.add_argument(
        "--concept",
        default=None,
        help="estimate the conditional MI of this concept (anchor: the prompt without it) instead of the MI against the empty prompt",
    )
    mi.add_argument(
        "--num-samples",
        type=_int_at_least(2),
        default=64,
        help="images to average over, at least 2 for a standard error (default 64)",
    )
    mi.add_argument("--draws", type=_positive_int, default=8, help="timestep and noise draws per image (default 8)")
    mi.add_argument(
        "--form", choices=["orthogonal", "standard"], default="orthogonal", help="estimator form (default orthogonal)"
    )
    mi.add_argument("--seed", type=_seed, default=0, help="seed of images and draws (default 0)")
    mi.add_argument("--json", type=Path, default=None, help="also write the estimate to this JSON file")

    export = commands.add_parser(
        "export",
        help="export an erased model as a complete diffusers folder",
        description="Write every component (text encoder included) with save_pretrained.",
    )
    export.add_argument("--erased", type=Path, required=True, help="erased-model folder")
    export.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty)")

    benchmark = commands.add_parser(
        "benchmark",
        help="run every method on every concept, same seeds",
        description="Erase each concept with each method and evaluate them side by side.",
    )
    benchmark.add_argument("--model", default="minicanvas", help="'minicanvas' (the benchmark needs its evaluator)")
    benchmark.add_argument("--concepts", required=True, help="comma-separated concepts, e.g. star,striped,red")
    benchmark.add_argument(
        "--methods",
        default="mimmu,esd,uce",
        help="comma-separated methods; 'esd0' is ESD-x with eta 0 (default mimmu,esd,uce)",
    )
    benchmark.add_argument("--epochs", type=int, default=None, help="override the epochs of every trained method")
    benchmark.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        metavar="S1,S2",
        help="erasure seeds (prompt drawing, forgetting-set noise, training); every method runs once per seed and "
        "results.md adds each one's mean and range over them. Default: each method's own seed (0)",
    )
    benchmark.add_argument(
        "--num-prompts",
        type=_positive_int,
        default=128,
        help="forgetting prompts per concept; retained prompts are four times as many (default 128)",
    )
    benchmark.add_argument(
        "--out", type=Path, required=True, help="output folder for results.json, results.md and the erased models"
    )
    benchmark.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # mimmu downloads no weights, so a pipeline that requests the hub fails instead of fetching.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mimmu import commands

    handlers = {
        "generate": commands.run_generate,
        "minicanvas": commands.run_minicanvas,
        "erase": commands.run_erase,
        "evaluate": commands.run_evaluate,
        "mi": commands.run_mi,
        "export": commands.run_export,
        "benchmark": commands.run_benchmark,
        "registry": commands.run_registry,
        "audit": commands.run_audit,
    }
    try:
        return handlers[args.command](args)
    except MimmuError as error:
        print(f"mimmu: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimmu: interrupted", file=sys.stderr)
        return 130
    except torch_out_of_memory() as error:
        logging.getLogger(__name__).debug("out of memory", exc_info=True)
        print(
            f"mimmu: error: out of memory ({str(error).splitlines()[0]}); pass a smaller --batch-size", file=sys.stderr
        )
        return 1
    except OSError as error:  # a full disk, a permission, a vanished file: the system's reason, without a traceback
        logging.getLogger(__name__).debug("system error", exc_info=True)
        where = f" at {str(error.filename)!r}" if error.filename else ""
        fix = OS_ERROR_FIXES.get(error.errno, "check that path and rerun")
        print(f"mimmu: error: {error.strerror or error}{where}; {fix}", file=sys.stderr)
        return 1


def torch_out_of_memory() -> type[BaseException]:
    """Return torch's out-of-memory error class, imported only once a command has failed."""
    import torch

    return torch.OutOfMemoryError


if __name__ == "__main__":
    sys.exit(main())
