"""Training the erased concepts' own input token embeddings (trainable "tokens" and "kv_tokens")."""

from __future__ import annotations

import pytest
import torch

from mimmu.artifact import apply_weights, load_erased_weights
from mimmu.cli import main
from mimmu.concept_tokens import WEIGHT_PREFIX, ConceptTokenEdit, editable_token_ids
from mimmu.config import EraseConfig
from mimmu.embeddings import embed_prompts
from mimmu.erase import erase
from mimmu.errors import MimmuError
from mimmu.forgetting_set import build_forgetting_set
from mimmu.loading import load_pipeline
from mimmu.prompt_sets import build_prompt_set
from mimmu.trainable import cross_attention_linears
from mimmu.trainer import MimmuTrainer, learning_rate_at

SMALL = {"forgetting_size": 8, "epochs": 2, "batch_size": 4, "mi_check_every": 1, "learning_rate": 1e-2}
UNNAMED = ["", "a star", "a green circle", "a striped heart"]  # name neither red nor blue


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))


def _token_id(pipeline, word: str) -> int:
    (token,) = pipeline.tokenizer(word, add_special_tokens=False).input_ids
    return token


def test_editable_token_ids_skip_shared_pieces(minicanvas_pipeline):
    tokenizer = minicanvas_pipeline.tokenizer
    assert tokenizer.convert_ids_to_tokens(editable_token_ids(tokenizer, ["lightning bolt"], ["a star"])) == [
        "lightning",
        "bolt",
    ]
    # "bolt" in a prompt that must stay unchanged: only "lightning" is trained.
    pieces = editable_token_ids(tokenizer, ["lightning bolt"], ["a bolt of cloth"])
    assert tokenizer.convert_ids_to_tokens(pieces) == ["lightning"]
    with pytest.raises(MimmuError, match=r"every word piece of concept 'red' \(red\) also occurs"):
        editable_token_ids(tokenizer, ["red"], ["a red star"])


def test_edit_changes_only_concept_prompts():
    pipeline = load_pipeline("minicanvas", device="cpu")
    before = embed_prompts(pipeline, ["a red star", *UNNAMED])
    edit = ConceptTokenEdit(pipeline, [_token_id(pipeline, "red")])
    with torch.no_grad():  # not a constant shift, which the encoder's LayerNorm would remove
        edit.rows += torch.randn(edit.rows.shape, generator=torch.Generator().manual_seed(0))
    with torch.enable_grad():
        embeds, _ = pipeline.encode_prompt(
            ["a red star", *UNNAMED], pipeline.device, 1, do_classifier_free_guidance=False
        )
        embeds[0].sum().backward()
    assert edit.rows.grad is not None and edit.rows.grad.abs().sum() > 0
    assert not torch.allclose(embeds[0], before[0], atol=1e-3)
    # Every position of "a red star" moves, not only the word's own: [CLS], [SEP] and padding mix it in.
    assert (embeds[0].detach() - before[0]).norm(dim=-1).min() > 1e-3
    assert torch.equal(embeds[1:].detach(), before[1:])
    edit.bake()
    edit.bake()  # a second call changes nothing
    assert torch.equal(embed_prompts(pipeline, ["a red star"])[0], embeds[0].detach())
    assert torch.equal(embed_prompts(pipeline, UNNAMED), before[1:])


def _unet_state(pipeline) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in pipeline.unet.state_dict().items()}


def test_tokens_erasure_writes_only_rows(tiny_sd_dir, tmp_path):
    base = load_pipeline(str(tiny_sd_dir))
    out = tmp_path / "erased"
    result = erase(str(tiny_sd_dir), ["blue"], EraseConfig(**{**SMALL, "trainable": "tokens"}), out, progress=False)
    record, weights = load_erased_weights(out)
    blue = _token_id(base, "blue")
    assert list(weights) == [f"{WEIGHT_PREFIX}{blue}"] == record["changed_tensors"]
    assert record["config"]["trainable"] == "tokens"
    assert len(result.mi) == 2
    erased = load_pipeline(str(out))
    row = erased.text_encoder.get_input_embeddings().weight[blue]
    assert torch.equal(row, weights[f"{WEIGHT_PREFIX}{blue}"])
    assert not torch.equal(row, base.text_encoder.get_input_embeddings().weight[blue])
    assert all(torch.equal(value, base.unet.state_dict()[name]) for name, value in _unet_state(erased).items())
    assert torch.equal(embed_prompts(erased, UNNAMED), embed_prompts(base, UNNAMED))
    assert not torch.allclose(embed_prompts(erased, ["a blue star"]), embed_prompts(base, ["a blue star"]))


def test_kv_tokens_erasure_trains_both(tiny_sd_dir, tmp_path):
    base = load_pipeline(str(tiny_sd_dir))
    config = EraseConfig(**{**SMALL, "trainable": "kv_tokens", "preserve_anchors": 0.9})
    erase(str(tiny_sd_dir), ["blue"], config, tmp_path / "erased", progress=False)
    _, weights = load_erased_weights(tmp_path / "erased")
    rows = [name for name in weights if name.startswith(WEIGHT_PREFIX)]
    linears = [name for name in weights if not name.startswith(WEIGHT_PREFIX)]
    assert rows == [f"{WEIGHT_PREFIX}{_token_id(base, 'blue')}"]
    assert sorted(linears) == sorted(f"{name}.weight" for name in cross_attention_linears(base.unet))
    # The exported diffusers folder carries the edited row in its own text encoder.
    assert main(["--quiet", "export", "--erased", str(tmp_path / "erased"), "--out", str(tmp_path / "export")]) == 0
    exported = load_pipeline(str(tmp_path / "export"))
    token = _token_id(base, "blue")
    assert torch.equal(exported.text_encoder.get_input_embeddings().weight[token], weights[rows[0]])


def test_tokens_resume_matches_uninterrupted(tiny_sd_dir, tmp_path):
    config = EraseConfig(**{**SMALL, "trainable": "kv_tokens", "epochs": 4, "checkpoint_every": 1})
    prompt_set = build_prompt_set(["blue"], "context", 8, seed=0)

    def trainer() -> MimmuTrainer:
        pipeline = load_pipeline(str(tiny_sd_dir))
        forgetting_set = build_forgetting_set(pipeline, prompt_set.forgetting, "test", tmp_path / "fs", progress=False)
        return MimmuTrainer(pipeline, forgetting_set, config)

    full = trainer()
    frozen = full.prompt_embeds.clone()
    full.train(tmp_path / "full", progress=False)
    # The MI checks read embeddings through the trained rows, not the ones cached at the start.
    assert not torch.allclose(full.prompt_embeds, frozen)
    expected = full.changed_weights()

    class Interrupt(Exception):
        pass

    def stop_after_five(step, loss):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        trainer().train(tmp_path / "resumed", progress=False, callback=stop_after_five)
    resumed = trainer()
    history = resumed.train(tmp_path / "resumed", progress=False)
    assert len(history.losses) == 4 * 2
    weights = resumed.changed_weights()
    assert sorted(weights) == sorted(expected)
    for name, value in expected.items():
        torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=1e-5)


def test_sequential_erasures_keep_both_rows(tiny_sd_dir, tmp_path):
    config = EraseConfig(**{**SMALL, "trainable": "tokens"})
    erase(str(tiny_sd_dir), ["blue"], config, tmp_path / "one", progress=False)
    erase(str(tmp_path / "one"), ["striped"], config, tmp_path / "two", progress=False)
    _, weights = load_erased_weights(tmp_path / "two")
    base = load_pipeline(str(tiny_sd_dir))
    tokens = {f"{WEIGHT_PREFIX}{_token_id(base, word)}" for word in ("blue", "striped")}
    assert set(weights) == tokens


def test_shared_word_pieces_rejected(spelt_sd_dir, tmp_path):
    # Spelt in single characters, "blue" shares every word piece with other prompts.
    with pytest.raises(MimmuError, match=r"every word piece of concept 'blue' \(b, l, u, e</w>\).*pass --trainable kv"):
        erase(
            str(spelt_sd_dir), ["blue"], EraseConfig(**{**SMALL, "trainable": "tokens"}), tmp_path / "x", progress=False
        )
    assert not (tmp_path / "x" / "erasure.json").exists()


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        (f"{WEIGHT_PREFIX}999999", (96,)),  # no such word piece
        (f"{WEIGHT_PREFIX}5", (95,)),  # wrong width
        (f"{WEIGHT_PREFIX}x", (96,)),  # not an id
    ],
)
def test_misfit_rows_rejected(tiny_sd_dir, name, shape):
    pipeline = load_pipeline(str(tiny_sd_dir))
    with pytest.raises(MimmuError, match="does not fit this text encoder"):
        apply_weights(pipeline, {name: torch.zeros(shape)})


def test_kv_tokens_rates_follow_schedule(tiny_sd_dir, tmp_path):
    config = EraseConfig(
        **{
            **SMALL,
            "trainable": "kv_tokens",
            "epochs": 3,
            "learning_rate": 1e-3,
            "token_learning_rate": 5e-2,
            "learning_rate_schedule": "cosine",
        }
    )
    pipeline = load_pipeline(str(tiny_sd_dir))
    prompt_set = build_prompt_set(["blue"], "context", 8, seed=0)
    forgetting_set = build_forgetting_set(pipeline, prompt_set.forgetting, "test", tmp_path / "fs", progress=False)
    trainer = MimmuTrainer(pipeline, forgetting_set, config)
    rates = []
    trainer.train(
        None,
        progress=False,
        callback=lambda step, loss: rates.append([g["lr"] for g in trainer.optimizer.param_groups]),
    )
    scales = [learning_rate_at(step, len(rates), 1.0, "cosine") for step in range(len(rates))]
    assert [unet for unet, _ in rates] == pytest.approx([1e-3 * s for s in scales])
    assert [token for _, token in rates] == pytest.approx([5e-2 * s for s in scales])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "esd", "token_learning_rate": 0.1}, "token_learning_rate applies to method 'mimmu' only"),
        ({"trainable": "tokens", "token_learning_rate": 0.0}, "token_learning_rate is 0"),
        ({"token_learning_rate": -1.0}, "token_learning_rate must be a finite number"),
    ],
)
def test_bad_token_settings(overrides, message):
    with pytest.raises(MimmuError, match=message):
        EraseConfig(**overrides)
