"""Implementations of the CLI subcommands: parse nothing, validate, run, write atomically."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mimmu.errors import MimmuError

logger = logging.getLogger(__name__)


def run_generate(args: argparse.Namespace) -> int:
    """Generate images for each prompt and write PNGs, a grid and a manifest."""
    from mimmu.generate import GenerationRequest, generate, make_grid, to_uint8
    from mimmu.loading import load_pipeline, sampling_defaults
    from mimmu.manifest import write_generation
    from mimmu.output import check_output_dir
    from mimmu.prompts import validate_prompts

    validate_prompts(args.prompt)  # cheap checks first, before loading any weights
    out = check_output_dir(args.out, args.overwrite)
    pipeline = load_pipeline(args.model, args.device, args.dtype, args.allow_pickle)
    prompts = validate_prompts(args.prompt, pipeline)

    request = GenerationRequest(
        prompts=[p for p in prompts for _ in range(args.num_images)],
        seeds=[args.seed + j for _ in prompts for j in range(args.num_images)],
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        batch_size=args.batch_size,
    )
    images = to_uint8(generate(pipeline, request, progress=not args.quiet))
    defaults = sampling_defaults(pipeline)
    write_generation(
        out,
        images=images,
        grid=make_grid(images, columns=args.num_images),
        request=request,
        settings={
            "model": str(args.model),
            "sampler": type(pipeline.scheduler).__name__,
            "num_inference_steps": args.steps or defaults.num_inference_steps,
            "guidance_scale": defaults.guidance_scale if args.guidance_scale is None else args.guidance_scale,
            "device": str(pipeline.device),
            "dtype": str(pipeline.unet.dtype).removeprefix("torch."),
        },
    )
    print(f"wrote {len(images)} images, grid.png and manifest.json to {out}")
    return 0


def run_minicanvas(args: argparse.Namespace) -> int:
    """Dispatch `mimmu minicanvas check|train`."""
    handlers = {"check": _run_check, "grade": _run_grade, "train": _run_train}
    return handlers[args.minicanvas_command](args)


def _run_grade(args: argparse.Namespace) -> int:
    from mimmu.io import write_json_atomic
    from mimmu.minicanvas.check import load_evaluator
    from mimmu.minicanvas.grading import grade_generation
    from mimmu.output import check_output_file

    out = check_output_file(args.json)
    report = grade_generation(args.directory, load_evaluator())
    write_json_atomic(out, report)
    for prompt, summary in report["prompts"].items():
        accuracy = (
            ", ".join(f"{name} {value:.2f}" for name, value in summary["accuracy"].items()) or "names no attribute"
        )
        print(f"{prompt!r}: {accuracy} (n={summary['num_images']})")
    print(f"wrote {out}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from mimmu.io import write_json_atomic
    from mimmu.loading import load_pipeline
    from mimmu.minicanvas.check import load_evaluator, run_check
    from mimmu.output import check_output_file

    out = check_output_file(args.json)
    pipeline = load_pipeline(args.model, args.device, args.dtype, args.allow_pickle)
    report = run_check(
        pipeline,
        load_evaluator(),
        num_renders=args.num_renders,
        num_generations=args.num_generations,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    report["model"] = str(args.model)
    write_json_atomic(out, report)
    for name in ("evaluator", "base"):
        accuracy = ", ".join(f"{k} {v:.3f}" for k, v in report[f"{name}_accuracy"].items())
        verdict = "passed" if report["gates"][name]["passed"] else "FAILED"
        print(f"{name}: {accuracy} (n={report[f'{name}_num_samples']}) gate {verdict}")
    print(f"wrote {out}")
    return 0 if report["passed"] else 1


def _run_train(args: argparse.Namespace) -> int:
    from mimmu.io import write_json_atomic
    from mimmu.minicanvas import training
    from mimmu.params import load_section

    weights = args.weights or Path(__file__).resolve().parent / "minicanvas" / "weights"
    progress = not args.quiet
    if args.component == "evaluator":
        config = load_section(args.params, "minicanvas.evaluator", training.EvaluatorConfig)
        metrics = training.train_evaluator(config, weights / "evaluator", progress)
    elif args.component == "vae":
        config = load_section(args.params, "minicanvas.vae", training.VaeConfig)
        metrics = training.train_vae(config, weights / "pipeline" / "vae", progress)
    else:
        config = load_section(args.params, "minicanvas.unet", training.UnetConfig)
        sampling = load_section(args.params, "minicanvas.sampling", training.SamplingConfig)
        pipeline_dir = weights / "pipeline"
        metrics = training.train_unet(config, pipeline_dir / "vae", pipeline_dir / "unet", progress)
        training.write_pipeline_files(pipeline_dir, sampling.num_inference_steps, sampling.guidance_scale)
    if not metrics:
        raise MimmuError(f"training {args.component} returned no metrics")
    if args.metrics:
        write_json_atomic(args.metrics, metrics)
    print(f"trained {args.component}: {metrics}")
    return 0


def _erase_config(args: argparse.Namespace):
    from mimmu.config import EraseConfig

    return EraseConfig(
        method=args.method,
        anchor=args.anchor,
        timestep_sampling=args.timestep_sampling,
        trainable=args.trainable,
        lora_rank=args.lora_rank,
        preserve_null=args.preserve_null,
        preserve_anchors=args.preserve_anchors,
        optimizer=args.optimizer,
        anchor_images=args.anchor_images,
        forgetting_size=args.forgetting_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        token_learning_rate=args.token_learning_rate,
        learning_rate_schedule=args.learning_rate_schedule,
        mi_tolerance=args.mi_tolerance,
        mi_check_every=args.mi_check_every,
        esd_eta=args.esd_eta,
        esd_sampling_steps=args.esd_sampling_steps,
        uce_lambda=args.uce_lambda,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )


def run_erase(args: argparse.Namespace) -> int:
    """Erase the concepts and write the erased-model folder."""
    from mimmu.erase import erase

    config = _erase_config(args)
    result = erase(
        args.model,
        args.concept,
        config,
        args.out,
        args.device,
        args.dtype,
        args.allow_pickle,
        args.overwrite,
        progress=not args.quiet,
    )
    mi = f", forgetting-set MI {result.mi[-1]['value']:.4f} nats" if result.mi else ""
    print(
        f"erased {', '.join(result.record['concepts'])} with {config.method} in {result.erase_seconds:.1f} s{mi}; wrote {result.out}"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate an erased model and write the metrics JSON (and the HTML report)."""
    from mimmu.artifact import read_training
    from mimmu.evaluation import evaluate_erased
    from mimmu.io import write_json_atomic
    from mimmu.minicanvas.check import load_evaluator
    from mimmu.output import check_output_dir, check_output_file

    out = check_output_file(args.json)
    training = None
    if args.report:
        check_output_dir(args.report, overwrite=True, option="--report")
        training = read_training(args.erased)  # before the evaluation, which takes minutes
    metrics, base, erased = evaluate_erased(
        args.model,
        args.erased,
        args.concept or None,
        load_evaluator(),
        args.num_prompts,
        args.seed,
        args.batch_size,
        args.device,
        args.dtype,
        progress=not args.quiet,
        mi_images=args.mi_images,
        allow_pickle=args.allow_pickle,
    )
    write_json_atomic(out, metrics)
    if args.report:
        import numpy as np

        from mimmu.prompt_sets import build_evaluation_prompts
        from mimmu.report import write_report

        evaluation = build_evaluation_prompts(metrics["concepts"], args.num_prompts, np.random.default_rng(args.seed))
        index = write_report(args.report, metrics, base, erased, evaluation, training)
        print(f"report: {index}")
    stderr = metrics["stderr"]
    print(
        f"EE {metrics['ee']:.3f}  UA {metrics['ua']:.3f}  IRA {metrics['ira']:.3f} (base {metrics['ira_base']:.3f})  "
        f"CRA {metrics['cra']:.3f} (base {metrics['cra_base']:.3f})  worst retained {metrics['worst_retained']:.3f} "
        f"+- {stderr['worst_retained']:.3f} ({metrics['worst_retained_concept']})  PSNR {metrics['paired_psnr_db']:.1f} dB  "
        f"MI {metrics['mi_target_erased']:.3f} +- {stderr['mi_target_erased']:.3f} "
        f"(base {metrics['mi_target_base']:.3f} +- {stderr['mi_target_base']:.3f}) nats, "
        f"ratio {metrics['mi_target_ratio']:.3f} +- {stderr['mi_target_ratio']:.3f}"
    )
    print(f"wrote {out}")
    return 0


def run_mi(args: argparse.Namespace) -> int:
    """Estimate the mutual information between a prompt and the images the model draws for it."""
    import torch

    from mimmu.concepts import contains_concept, normalize_concept, remove_concept
    from mimmu.embeddings import embed_prompts
    from mimmu.generate import GenerationRequest, generate_latents
    from mimmu.io import write_json_atomic
    from mimmu.loading import load_pipeline
    from mimmu.mutual_information import pointwise_mi, summarize
    from mimmu.output import check_output_file
    from mimmu.prompts import validate_prompts

    out = check_output_file(args.json) if args.json else None  # before the compute, not after
    prompt = validate_prompts([args.prompt])[0]
    anchor = ""
    if args.concept is not None:
        concept = normalize_concept(args.concept)
        if not contains_concept(prompt, concept):
            raise MimmuError(f"prompt {prompt!r} does not contain concept {concept!r}; pass a prompt that names it")
        anchor = remove_concept(prompt, concept)
    pipeline = load_pipeline(args.model, args.device, args.dtype, args.allow_pickle)
    validate_prompts([prompt], pipeline)
    seeds = [args.seed + i for i in range(args.num_samples)]
    latents = generate_latents(pipeline, GenerationRequest([prompt] * args.num_samples, seeds), progress=not args.quiet)
    embeds = embed_prompts(pipeline, [prompt]).expand(len(latents), -1, -1)
    anchor_embeds = embed_prompts(pipeline, [anchor]).expand(len(latents), -1, -1)
    pointwise = pointwise_mi(
        pipeline.unet,
        pipeline.scheduler.alphas_cumprod,
        latents,
        embeds,
        anchor_embeds,
        args.draws,
        args.form,
        torch.Generator().manual_seed(args.seed),
    )
    estimate = summarize(pointwise, args.draws, args.form).to_dict()
    estimate.update({"prompt": prompt, "anchor": anchor})
    print(
        f"i(x; {prompt!r} vs {anchor!r}) = {estimate['value']:.4f} +- {estimate['stderr']:.4f} nats (n={estimate['num_images']})"
    )
    if out is not None:
        write_json_atomic(out, estimate)
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export an erased model as a complete diffusers folder."""
    from mimmu.artifact import export_pipeline, is_erased_dir
    from mimmu.loading import load_pipeline
    from mimmu.output import check_output_dir

    if not is_erased_dir(args.erased):
        raise MimmuError(
            f"{str(args.erased)!r} is not an erased-model folder (no erasure.json); pass one written by `mimmu erase`"
        )
    out = check_output_dir(args.out)
    pipeline = load_pipeline(args.erased, device="cpu")
    export_pipeline(pipeline, out)
    print(f"exported {args.erased} to {out}")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    """Run every method on every concept with the same seeds and write JSON and Markdown tables."""
    from mimmu.benchmark import run_benchmark as benchmark

    concepts = [c.strip() for c in args.concepts.split(",") if c.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = benchmark(
        args.model,
        concepts,
        methods,
        args.out,
        args.epochs,
        args.num_prompts,
        args.overwrite,
        not args.quiet,
        seeds=args.seeds,
    )
    print((Path(args.out) / "results.md").read_text())
    return 0 if results else 1


def run_registry(args: argparse.Namespace) -> int:
    """Print the registry status."""
    import json

    from mimmu.registry import registry_status

    status = registry_status(args.model)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(f"registered model: {status['registered_model']} ({status['tracking_uri']})")
    for alias in ("production", "candidate"):
        entry = status.get(alias)
        if entry is None:
            print(f"  {alias}: none")
        else:
            gates = "passed" if entry["gates_passed"] else "failed"
            print(f"  {alias}: version {entry['version']}, erased {', '.join(entry['erased_concepts'])}, gates {gates}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """Verify the audit log's hash chain, and its S3 copy when one is configured."""
    from mimmu.audit import copy_object, copy_uri, verify_copy, verify_log
    from mimmu.home import state_dir
    from mimmu.object_store import parse_s3_uri

    log = args.log or state_dir() / "audit" / "decisions.jsonl"
    prefix = None
    if not args.local_only:
        prefix = parse_s3_uri(args.s3, "--s3") if args.s3 is not None else copy_uri()
    if not Path(log).is_file():
        raise MimmuError(f"audit log {str(log)!r} not found; run a flow first or pass --log")
    count = verify_log(log)
    print(f"{log}: {count} records, chain intact")
    if prefix is not None:
        verify_copy(log, prefix)
        print(f"{copy_object(log, prefix)}: identical copy, chain intact")
    return 0
