"""Seeded generation and the `mimmu generate` command."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from mimmu.cli import main
from mimmu.generate import GenerationRequest, generate, make_grid


def test_same_prompt_and_seed_same_image(minicanvas_pipeline):
    request = GenerationRequest(["a red star"], [11], num_inference_steps=4)
    first = generate(minicanvas_pipeline, request, progress=False)
    second = generate(minicanvas_pipeline, request, progress=False)
    assert first.shape == (1, 32, 32, 3)
    assert np.array_equal(first, second)


def test_image_independent_of_batch(minicanvas_pipeline):
    prompts = ["a red star", "a blue ring", "a green heart"]
    batched = generate(minicanvas_pipeline, GenerationRequest(prompts, [1, 2, 3], 4, batch_size=3), progress=False)
    single = generate(minicanvas_pipeline, GenerationRequest(prompts[1:2], [2], 4), progress=False)
    np.testing.assert_allclose(batched[1], single[0], atol=1e-4)


def test_different_seeds_differ(minicanvas_pipeline):
    images = generate(minicanvas_pipeline, GenerationRequest(["a red star"] * 2, [1, 2], 4), progress=False)
    assert not np.array_equal(images[0], images[1])


def test_tiny_pipeline_generates(tiny_sd_dir):
    from mimmu.loading import load_pipeline

    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    images = generate(pipeline, GenerationRequest(["a cat", "a dog"], [0, 1], 2), progress=False)
    assert images.shape == (2, 16, 16, 3)
    assert np.isfinite(images).all()


def test_make_grid_layout():
    images = np.full((3, 4, 4, 3), 255, np.uint8)
    grid = make_grid(images, columns=2, padding=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3)
    assert grid[1:5, 1:5].min() == 255
    assert grid[6:10, 6:10].max() == 0  # the fourth cell stays empty


def test_generate_command_writes_outputs(tmp_path, capsys):
    out = tmp_path / "gen"
    code = main(
        [
            "--quiet",
            "generate",
            "--prompt",
            "a red star",
            "--prompt",
            "a blue ring",
            "--num-images",
            "3",
            "--seed",
            "5",
            "--steps",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sampler"] == "DPMSolverMultistepScheduler"
    assert manifest["num_inference_steps"] == 4
    assert manifest["guidance_scale"] > 1.0
    assert [e["seed"] for e in manifest["images"]] == [5, 6, 7, 5, 6, 7]
    assert [e["prompt"] for e in manifest["images"]][:3] == ["a red star"] * 3
    assert len(list((out / "images").glob("*.png"))) == 6
    assert Image.open(out / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)
    assert "wrote 6 images" in capsys.readouterr().out
