"""Measure MiniCanvas generation throughput (images per second) with the default sampler.

    .venv/bin/python benchmarks/generation_throughput.py --batch-size 64 --batches 4

Loads the embedded model once, warms up with one batch, then times `--batches` batches
of `--batch-size` prompts and prints images per second (min, median, max over batches).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from mimmu.generate import GenerationRequest, generate
from mimmu.loading import load_pipeline, sampling_defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches (default 4)")
    args = parser.parse_args()

    pipeline = load_pipeline("minicanvas")
    defaults = sampling_defaults(pipeline)
    prompts = ["a picture of a striped red star"] * args.batch_size
    generate(
        pipeline, GenerationRequest(prompts, list(range(args.batch_size)), batch_size=args.batch_size), progress=False
    )
    rates = []
    for batch in range(args.batches):
        seeds = [1000 * (batch + 1) + i for i in range(args.batch_size)]
        started = time.perf_counter()
        generate(pipeline, GenerationRequest(prompts, seeds, batch_size=args.batch_size), progress=False)
        rates.append(args.batch_size / (time.perf_counter() - started))
    result = {
        "images_per_second": {"min": min(rates), "median": statistics.median(rates), "max": max(rates)},
        "batch_size": args.batch_size,
        "batches": args.batches,
        "sampler": type(pipeline.scheduler).__name__,
        "num_inference_steps": defaults.num_inference_steps,
        "guidance_scale": defaults.guidance_scale,
        "device": str(pipeline.device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
