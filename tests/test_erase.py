"""Erasure on a tiny random Stable Diffusion pipeline: artifacts, resume, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mimmu.artifact import load_erased_weights, read_erasure
from mimmu.baselines.uce import uce_edit
from mimmu.benchmark import parse_method
from mimmu.concepts import contains_concept
from mimmu.config import EraseConfig
from mimmu.embeddings import embed_prompts
from mimmu.erase import erase
from mimmu.errors import MimmuError
from mimmu.forgetting_set import ForgettingSet, build_forgetting_set, load_forgetting_set
from mimmu.loading import load_erased, load_pipeline
from mimmu.mutual_information import rows_per_group
from mimmu.prompt_sets import build_prompt_set, check_concepts
from mimmu.trainable import complement_projector, cross_attention_linears, principal_directions
from mimmu.trainer import MimmuTrainer, learning_rate_at

# These tests cover the UNet path (to_k, to_v and their projections); tests/test_concept_tokens.py
# covers the default, the concepts' token rows.
SMALL = {
    "forgetting_size": 8,
    "epochs": 2,
    "batch_size": 4,
    "esd_sampling_steps": 3,
    "mi_check_every": 1,
    "trainable": "kv",
}


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))


def _forgetting_set(pipeline, concepts=("star",), size=8, digest="test"):
    prompt_set = build_prompt_set(list(concepts), "context", size, seed=0)
    from mimmu.home import state_dir

    return build_forgetting_set(pipeline, prompt_set.forgetting, digest, state_dir() / "fs", progress=False)


def test_erase_writes_loadable_artifact(tiny_sd_dir, tmp_path):
    out = tmp_path / "erased"
    result = erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), out, progress=False)
    record = read_erasure(out)
    assert record["concepts"] == ["star"]
    assert record["method"] == "mimmu"
    assert all(name.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for name in record["changed_tensors"])
    assert not (out / "checkpoints").exists()
    # 2 epochs over 8 concept images and, by default, their 8 anchor images, in batches of 4.
    assert len(result.losses) == 2 * 4
    assert [entry["epoch"] for entry in result.mi] == [1, 2]
    pipeline = load_pipeline(out, device="cpu")
    _, weights = load_erased_weights(out)
    state = pipeline.unet.state_dict()
    for name, value in weights.items():
        assert torch.equal(state[name], value)


@pytest.mark.parametrize("preserve_anchors", [0.0, 0.9])
def test_null_prompt_prediction_unchanged(tiny_sd_dir, tmp_path, preserve_anchors):
    """The null projection keeps the unconditional prediction, alone and with anchor preservation."""
    out = tmp_path / "erased"
    erase(
        str(tiny_sd_dir),
        ["star"],
        EraseConfig(**{**SMALL, "learning_rate": 1e-2, "preserve_null": True, "preserve_anchors": preserve_anchors}),
        out,
        progress=False,
    )
    base = load_pipeline(tiny_sd_dir, device="cpu")
    erased = load_pipeline(out, device="cpu")
    null = embed_prompts(base, [""])
    concept = embed_prompts(base, ["a red star"])
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(
            erased.unet(latents, t, encoder_hidden_states=null).sample,
            base.unet(latents, t, encoder_hidden_states=null).sample,
            atol=1e-5,
            rtol=1e-5,
        )
        changed = (
            (
                erased.unet(latents, t, encoder_hidden_states=concept).sample
                - base.unet(latents, t, encoder_hidden_states=concept).sample
            )
            .abs()
            .max()
        )
    assert changed > 1e-4


def test_anchor_preservation_keeps_anchor_directions(tiny_sd_dir):
    """With preserve_anchors, to_k and to_v change only off the anchors' principal directions, and still change."""
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline)
    anchors = embed_prompts(pipeline, [p.anchor for p in forgetting_set.prompts] + [""]).flatten(0, 1)
    preserved = principal_directions(anchors, 0.9)  # (k, D)
    assert 0 < len(preserved) < anchors.shape[1]
    before = {n: layer.weight.detach().double().clone() for n, layer in cross_attention_linears(pipeline.unet).items()}
    config = EraseConfig(**{**SMALL, "learning_rate": 1e-2, "preserve_anchors": 0.9})
    trainer = MimmuTrainer(pipeline, forgetting_set, config)
    expected = torch.eye(anchors.shape[1], dtype=torch.float64) - preserved.T @ preserved
    torch.testing.assert_close(trainer.projection.projector.double(), expected, atol=1e-6, rtol=0)
    trainer.train(None, progress=False)
    for name, layer in cross_attention_linears(pipeline.unet).items():
        delta = layer.weight.detach().double() - before[name]  # (out, D)
        assert delta.norm() > 1e-4, f"{name} did not change"
        assert (delta @ preserved.T).norm() < 1e-5 * delta.norm(), f"{name} changed along a preserved direction"


def test_anchor_preservation_skips_erased_concepts(tiny_sd_dir):
    """Erasing red and star together: "a star", the anchor of "a red star", must not protect star."""
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline, concepts=("red", "star"), size=16)
    naming = [
        p.anchor
        for p in forgetting_set.prompts
        if contains_concept(p.anchor, "star") or contains_concept(p.anchor, "red")
    ]
    assert naming, "the test needs an anchor that names the other erased concept"
    free = [p.anchor for p in forgetting_set.prompts if p.anchor not in naming]
    states = embed_prompts(pipeline, [*free, ""]).flatten(0, 1)
    preserved = principal_directions(states, 0.9)
    expected = torch.eye(states.shape[1], dtype=torch.float64) - preserved.T @ preserved
    trainer = MimmuTrainer(pipeline, forgetting_set, EraseConfig(**{**SMALL, "preserve_anchors": 0.9}))
    torch.testing.assert_close(trainer.projection.projector.double(), expected, atol=1e-6, rtol=0)


def test_anchor_preservation_projects_adapter_factors(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline)
    config = EraseConfig(**{**SMALL, "trainable": "lora_kv", "learning_rate": 1e-2, "preserve_anchors": 0.9})
    trainer = MimmuTrainer(pipeline, forgetting_set, config)
    trainer.train(None, progress=False)
    projector = trainer.projection.projector.double()
    factors = [p for name, p in trainer.parameters.items() if name.endswith("lora_A")]
    assert factors
    for factor in factors:
        factor = factor.detach().double()  # (rank, D)
        assert (factor - factor @ projector).norm() < 1e-5 * factor.norm()


@pytest.mark.parametrize("method", ["mimmu", "esd", "uce"])
def test_defaults_per_method(method):
    config = EraseConfig(method=method)
    assert config.preserve_anchors == (0.995 if method == "mimmu" else 0.0)
    assert config.anchor_images is False  # MiM-MU's token rows train without them (MIMMU_ANCHOR_IMAGES)
    assert EraseConfig(method="mimmu", trainable="kv").anchor_images is True
    assert config.epochs == (45 if method == "mimmu" else 60)
    assert config.learning_rate == (1.2e-3 if method == "mimmu" else 1e-3)
    # ESD-x and UCE change what they change as published; MiM-MU trains the concepts' token rows.
    assert config.trainable == {"mimmu": "tokens", "esd": "attn2", "uce": "kv"}[method]
    assert parse_method(method) == config
    # An explicit value wins over the method's default.
    assert EraseConfig(method=method, epochs=7).epochs == 7


def test_config_values_normalised():
    assert EraseConfig(preserve_anchors=0).digest() == EraseConfig(preserve_anchors=0.0).digest()
    assert EraseConfig(learning_rate=1).digest() == EraseConfig(learning_rate=1.0).digest()
    config = EraseConfig(preserve_anchors=0.99)
    assert EraseConfig.from_dict(config.to_dict()) == config
    assert parse_method("mimmu+preserve_anchors=0.99") == config
    assert parse_method("esd0").preserve_anchors == 0.0


def test_learning_rate_schedule():
    assert learning_rate_at(7, 10, 1e-3, "constant") == 1e-3
    assert learning_rate_at(0, 10, 1e-3, "cosine") == pytest.approx(1e-3)
    assert learning_rate_at(5, 10, 1e-3, "cosine") == pytest.approx(5e-4)
    assert learning_rate_at(9, 10, 1e-3, "cosine") == pytest.approx(1e-3 * (1 + math.cos(0.9 * math.pi)) / 2)
    with pytest.raises(MimmuError, match="learning_rate_schedule applies to method 'mimmu' only"):
        EraseConfig(method="esd", learning_rate_schedule="cosine")
    with pytest.raises(MimmuError, match="invalid learning_rate_schedule 'step'; expected one of constant, cosine"):
        EraseConfig(learning_rate_schedule="step")


def test_trainer_follows_cosine_schedule(tiny_sd_dir):
    config = EraseConfig(**{**SMALL, "epochs": 3, "learning_rate_schedule": "cosine"})
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    trainer = MimmuTrainer(pipeline, _forgetting_set(pipeline), config)
    rates = []
    trainer.train(
        None, progress=False, callback=lambda step, loss: rates.append(trainer.optimizer.param_groups[0]["lr"])
    )
    total = len(rates)
    assert total == 3 * 2
    assert rates == pytest.approx([learning_rate_at(s, total, config.learning_rate, "cosine") for s in range(total)])
    assert rates[0] == pytest.approx(config.learning_rate)
    assert rates[-1] < 0.1 * config.learning_rate


def test_principal_directions_energy_share():
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.1])
    states = torch.randn(200, 6, generator=generator, dtype=torch.float64) * scales  # energy mostly in few axes
    energy = states.pow(2).sum()
    for share in (0.5, 0.9, 0.99, 0.999):
        directions = principal_directions(states, share)
        captured = (states @ directions.T).pow(2).sum() / energy
        fewer = (states @ directions[:-1].T).pow(2).sum() / energy
        assert captured >= share
        assert share > fewer
        torch.testing.assert_close(directions @ directions.T, torch.eye(len(directions), dtype=torch.float64))
    projector = complement_projector(principal_directions(states, 0.9), "test states", "lower the share")
    torch.testing.assert_close(
        projector @ principal_directions(states, 0.9).T.float(), torch.zeros(6, 2), atol=1e-6, rtol=0
    )
    with pytest.raises(MimmuError, match="test states span all 6 embedding dimensions, .*; lower the share"):
        complement_projector(states, "test states", "lower the share")


def test_forgetting_set_reused(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    first = _forgetting_set(pipeline)
    second = _forgetting_set(pipeline)
    assert first.path == second.path
    assert torch.equal(first.latents, second.latents)
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["entries"][0]["seed"] == 0
    assert {"prompt", "anchor", "seed"} <= set(manifest["entries"][0])
    assert manifest["guidance_scale"] == 7.5
    assert manifest["device"] == "cpu"
    assert manifest["dtype"] == "float32"


def test_altered_forgetting_set_rejected(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    stored = _forgetting_set(pipeline)
    latents_file = stored.path / "latents.safetensors"
    data = bytearray(latents_file.read_bytes())
    data[-5] ^= 0x01  # a low bit of one latent: a still-loadable, silently different value
    latents_file.write_bytes(bytes(data))
    with pytest.raises(MimmuError, match="is corrupted .* delete the folder to rebuild it"):
        _forgetting_set(pipeline)


def test_anchor_images_double_set(tiny_sd_dir):
    from mimmu.home import state_dir

    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    prompt_set = build_prompt_set(["star"], "context", 4, seed=0)
    plain = build_forgetting_set(pipeline, prompt_set.forgetting, "test", state_dir() / "fs", progress=False)
    doubled = build_forgetting_set(
        pipeline, prompt_set.forgetting, "test", state_dir() / "fs", progress=False, anchor_images=True
    )
    assert doubled.path != plain.path
    assert len(doubled.latents) == 2 * len(plain.latents) == 8
    assert doubled.prompts == plain.prompts * 2
    assert doubled.seeds == plain.seeds * 2
    entries = json.loads((doubled.path / "manifest.json").read_text())["entries"]
    assert [e["image_prompt"] for e in entries] == [p.prompt for p in plain.prompts] + [p.anchor for p in plain.prompts]
    # The first half are the concept prompts' images, identical to the plain set's.
    torch.testing.assert_close(doubled.latents[:4], plain.latents)
    assert not torch.allclose(doubled.latents[4:], plain.latents)
    torch.testing.assert_close(doubled.concept_latents, plain.latents)
    reloaded = load_forgetting_set(doubled.path)
    assert reloaded.anchor_images
    assert not load_forgetting_set(plain.path).anchor_images


def test_sgd_updates_stay_in_token_span(tiny_sd_dir, tmp_path):
    """Plain gradient steps change to_k and to_v only along the forgetting prompts' token states; Adam does not."""
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline, size=1)
    states = embed_prompts(pipeline, [forgetting_set.prompts[0].prompt])[0].double()  # (L, D)
    _, singular, vt = torch.linalg.svd(states, full_matrices=True)
    rank = int((singular > singular[0] * 1e-6).sum())
    assert rank < states.shape[1], "the test needs token states that do not span the embedding space"
    outside = vt[rank:]  # (D - rank, D): directions no token state of the prompt has

    def leak(optimizer: str, learning_rate: float) -> float:
        pipe = load_pipeline(tiny_sd_dir, device="cpu")
        before = {n: layer.weight.detach().double().clone() for n, layer in cross_attention_linears(pipe.unet).items()}
        settings = {"batch_size": 1, "optimizer": optimizer, "learning_rate": learning_rate, "preserve_anchors": 0}
        config = EraseConfig(**{**SMALL, **settings})
        MimmuTrainer(pipe, forgetting_set, config).train(None, progress=False)
        worst = 0.0
        for name, layer in cross_attention_linears(pipe.unet).items():
            delta = layer.weight.detach().double() - before[name]
            assert delta.norm() > 0, f"{optimizer} left {name} unchanged"
            worst = max(worst, float((delta @ outside.T).norm() / delta.norm()))
        return worst

    # The weights are float32, so rounding leaves a share of about 1e-4 outside the span at this step size.
    assert leak("sgd", 1e-2) < 1e-3
    assert leak("adam", 1e-3) > 0.1


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_matches_uninterrupted(tiny_sd_dir, tmp_path, schedule):
    config = EraseConfig(**{**SMALL, "epochs": 4, "checkpoint_every": 1, "learning_rate_schedule": schedule})
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline)
    MimmuTrainer(pipeline, forgetting_set, config).train(tmp_path / "full", progress=False)
    expected = {k: v.clone() for k, v in pipeline.unet.state_dict().items() if "attn2.to_" in k}

    class Interrupt(Exception):
        pass

    def stop_after_five(step, loss):
        if step == 5:
            raise Interrupt

    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    with pytest.raises(Interrupt):
        MimmuTrainer(pipeline, forgetting_set, config).train(
            tmp_path / "resumed", progress=False, callback=stop_after_five
        )
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    history = MimmuTrainer(pipeline, forgetting_set, config).train(tmp_path / "resumed", progress=False)
    assert len(history.losses) == 4 * 2
    for name, value in expected.items():
        torch.testing.assert_close(pipeline.unet.state_dict()[name], value, atol=1e-6, rtol=1e-5)


def test_corrupted_checkpoint_rejected(tiny_sd_dir, tmp_path):
    config = EraseConfig(**{**SMALL, "checkpoint_every": 1})
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline)
    MimmuTrainer(pipeline, forgetting_set, config).train(tmp_path / "ckpt", progress=False)
    tensors = tmp_path / "ckpt" / "epoch-0002" / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(MimmuError, match="epoch-0002' is corrupted"):
        MimmuTrainer(load_pipeline(tiny_sd_dir, device="cpu"), forgetting_set, config).train(
            tmp_path / "ckpt", progress=False
        )


def test_checkpoint_of_other_config_rejected(tiny_sd_dir, tmp_path):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    forgetting_set = _forgetting_set(pipeline)
    MimmuTrainer(pipeline, forgetting_set, EraseConfig(**{**SMALL, "checkpoint_every": 1})).train(
        tmp_path / "c", progress=False
    )
    other = EraseConfig(**{**SMALL, "checkpoint_every": 1, "learning_rate": 5e-3})
    with pytest.raises(MimmuError, match="another configuration"):
        MimmuTrainer(load_pipeline(tiny_sd_dir, device="cpu"), forgetting_set, other).train(
            tmp_path / "c", progress=False
        )


def test_nan_loss_stops_run(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    good = _forgetting_set(pipeline)
    broken = ForgettingSet(torch.full_like(good.latents, float("nan")), good.prompts, good.seeds, {"key": "nan"})
    with pytest.raises(MimmuError, match=r"loss became nan at epoch 0, step 0"):
        MimmuTrainer(pipeline, broken, EraseConfig(**SMALL)).train(None, progress=False)


def test_sequential_erasure_keeps_root_base(tiny_sd_dir, tmp_path):
    erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), tmp_path / "one", progress=False)
    erase(str(tmp_path / "one"), ["striped"], EraseConfig(**SMALL), tmp_path / "two", progress=False)
    first, second = read_erasure(tmp_path / "one"), read_erasure(tmp_path / "two")
    assert second["concepts"] == ["star", "striped"]
    assert second["base_digest"] == first["base_digest"]
    assert second["history"][0]["concepts"] == ["star"]
    with pytest.raises(MimmuError, match="'star' is already erased"):
        erase(str(tmp_path / "two"), ["star"], EraseConfig(**SMALL), tmp_path / "three", progress=False)


def test_erased_model_on_other_base_rejected(tiny_sd_dir, tmp_path):
    import shutil

    erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), tmp_path / "erased", progress=False)
    other = tmp_path / "other-base"
    shutil.copytree(tiny_sd_dir, other)
    from safetensors.torch import load_file, save_file

    weights = other / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    first = next(iter(state))
    state[first] = state[first] + 1.0
    save_file(state, weights)
    with pytest.raises(MimmuError, match="use the base model it was made from"):
        load_erased(tmp_path / "erased", base=other, device="cpu")


@pytest.mark.parametrize("method", ["esd", "uce"])
def test_baselines_write_artifacts(tiny_sd_dir, tmp_path, method):
    out = tmp_path / method
    erase(
        str(tiny_sd_dir), ["star"], EraseConfig(**{**SMALL, "method": method, "trainable": None}), out, progress=False
    )
    record = read_erasure(out)
    assert record["method"] == method
    assert record["changed_tensors"]


def test_uce_moves_concept_keys_to_anchor(tiny_sd_dir):
    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    concept = embed_prompts(pipeline, ["star"])[0].double()
    anchor = embed_prompts(pipeline, [""])[0].double()
    before = {n: layer.weight.detach().double().clone() for n, layer in cross_attention_linears(pipeline.unet).items()}
    uce_edit(pipeline, ["star"], [""], ["circle", "red"], ridge=0.1)
    for name, layer in cross_attention_linears(pipeline.unet).items():
        old, new = before[name], layer.weight.detach().double()
        target = anchor @ old.T
        assert ((concept @ new.T) - target).norm() < ((concept @ old.T) - target).norm()


@pytest.mark.parametrize(
    ("concepts", "message"),
    [
        ([""], "empty or whitespace"),
        (["   "], "empty or whitespace"),
        (["unicorn"], "appears in none of the"),
        (["../../etc"], "characters other than"),
        (["star", "Star"], "more than once"),
        ([], "no concept given"),
    ],
)
def test_bad_concepts(concepts, message):
    with pytest.raises(MimmuError, match=message):
        check_concepts(concepts)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "salun"}, "invalid method 'salun'"),
        ({"anchor": "random"}, "invalid anchor 'random'"),
        ({"trainable": "all"}, "invalid trainable 'all'"),
        ({"optimizer": "lion"}, "invalid optimizer 'lion'"),
        ({"method": "esd", "optimizer": "sgd"}, "optimizer applies to method 'mimmu' only"),
        ({"method": "uce", "anchor_images": True, "optimizer": "sgd"}, "optimizer, anchor_images apply to method"),
        ({"method": "esd", "preserve_anchors": 0.9}, "preserve_anchors applies to method 'mimmu' only"),
        ({"method": "esd", "preserve_null": True}, "preserve_null applies to method 'mimmu' only"),
        ({"preserve_anchors": 1.0}, "preserve_anchors must be a number at least 0 and below 1"),
        ({"preserve_anchors": -0.1}, "preserve_anchors must be a number at least 0 and below 1"),
        ({"preserve_anchors": True}, "preserve_anchors must be a number"),
        ({"epochs": -1}, "epochs must be 0 or more"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"epochs": True}, "epochs must be a whole number"),
        ({"anchor_images": "yes"}, "anchor_images must be true or false"),
        ({"learning_rate": "0.1"}, "learning_rate must be a finite number"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"method": "esd", "trainable": "kv"}, "trainable 'kv' does not apply to method 'esd'"),
        ({"method": "uce", "trainable": "lora_kv"}, "trainable 'lora_kv' does not apply to method 'uce'"),
        ({"seed": -1}, "seed must be a whole number from 0 to 4294967295"),
        ({"seed": 1.5}, "seed must be a whole number from 0 to 4294967295"),
        ({"seed": 2**32}, "seed must be a whole number from 0 to 4294967295"),
        ({"method": "uce", "uce_lambda": 0}, "uce_lambda must be above 0"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(MimmuError, match=message):
        EraseConfig(**overrides)


def test_bad_method_spec():
    with pytest.raises(MimmuError, match="expected true or false, got 'maybe'"):
        parse_method("mimmu+anchor_images=maybe")


def test_output_folder_with_erased_model_rejected(tiny_sd_dir, tmp_path):
    erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), tmp_path / "out", progress=False)
    with pytest.raises(MimmuError, match="already contains an erased model"):
        erase(str(tiny_sd_dir), ["red"], EraseConfig(**SMALL), tmp_path / "out", progress=False)


def test_export_roundtrip(tiny_sd_dir, tmp_path):
    from mimmu.cli import main

    erase(str(tiny_sd_dir), ["star"], EraseConfig(**SMALL), tmp_path / "erased", progress=False)
    assert main(["--quiet", "export", "--erased", str(tmp_path / "erased"), "--out", str(tmp_path / "full")]) == 0
    exported = load_pipeline(tmp_path / "full", device="cpu")
    erased = load_pipeline(tmp_path / "erased", device="cpu")
    for name, value in erased.unet.state_dict().items():
        assert torch.equal(exported.unet.state_dict()[name], value), name


def test_anchor_images_layout_checked(tiny_sd_dir):
    from mimmu.home import state_dir

    pipeline = load_pipeline(tiny_sd_dir, device="cpu")
    prompt_set = build_prompt_set(["star"], "context", 2, seed=0)
    doubled = build_forgetting_set(
        pipeline, prompt_set.forgetting, "test", state_dir() / "fs", progress=False, anchor_images=True
    )
    manifest_path = doubled.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["entries"][2]["image_prompt"] = manifest["entries"][0]["prompt"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MimmuError, match="its manifest sets anchor_images"):
        load_forgetting_set(doubled.path)


def test_mi_rows_cover_every_concept():
    groups = ["star"] * 40 + ["red"] * 40 + ["striped"] * 5
    rows = rows_per_group(groups, 64)
    assert rows == list(range(21)) + list(range(40, 61)) + list(range(80, 85))
    assert rows_per_group(["star"] * 128, 64) == list(range(64))
    assert rows_per_group([], 64) == []
