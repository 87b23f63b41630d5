"""Bad input: one-line error naming the value and the fix, non-zero exit, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mimmu.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    return raised.value.code, capsys.readouterr().err


def _error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_unknown_model_name(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _error(["generate", "--model", "minicanva", "--prompt", "a star", "--out", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 0
    assert "'minicanva'" in err
    assert "pass 'minicanvas', a diffusers pipeline directory or an erased-model directory" in err
    assert not out.exists()


def test_missing_directory(tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "nowhere"
    code, err = _error(["generate", "--model", str(missing), "--prompt", "a star", "--out", str(out)], capsys)
    assert code == 2
    assert str(missing) in err
    assert not out.exists()


def test_non_pipeline_directory(tmp_path, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    out = tmp_path / "out"
    code, err = _error(["generate", "--model", str(folder), "--prompt", "a star", "--out", str(out)], capsys)
    assert code == 2
    assert "neither a diffusers pipeline directory" in err
    assert not out.exists()


def test_pickle_without_flag(tiny_sd_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd_dir, folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "vae" / "diffusion_pytorch_model.bin")
    weights.unlink()
    out = tmp_path / "out"
    code, err = _error(["generate", "--model", str(folder), "--prompt", "a cat", "--out", str(out)], capsys)
    assert code == 2
    assert "pickle-based weight file" in err
    assert "--allow-pickle" in err
    assert not out.exists()


def test_empty_prompt_list(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _error(["generate", "--out", str(out)], capsys)
    assert code == 2
    assert "no prompts given" in err
    assert "--prompt" in err
    assert not out.exists()


def test_blank_prompt(tmp_path, capsys):
    code, err = _error(["generate", "--prompt", "  ", "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "empty or whitespace" in err


def test_prompt_too_long(tmp_path, capsys):
    prompt = "a " + "very " * 40 + "red star"
    out = tmp_path / "out"
    code, err = _error(["generate", "--prompt", prompt, "--out", str(out)], capsys)
    assert code == 2
    assert "tokens but the tokenizer allows 24" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_num_images_invalid(value, tmp_path, capsys):
    code, err = _run(["generate", "--prompt", "a star", "--num-images", value, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--num-images" in err
    assert not (tmp_path / "o").exists()


def test_output_path_is_file(tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("keep me")
    code, err = _error(["generate", "--prompt", "a star", "--out", str(file)], capsys)
    assert code == 2
    assert "is a file" in err
    assert file.read_text() == "keep me"


def test_output_folder_not_empty(tmp_path, capsys):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep me")
    code, err = _error(["generate", "--prompt", "a star", "--out", str(folder)], capsys)
    assert code == 2
    assert "--overwrite" in err
    assert (folder / "keep.txt").read_text() == "keep me"


def test_check_json_path_is_folder(tmp_path, capsys):
    code, err = _error(["minicanvas", "check", "--json", str(tmp_path)], capsys)
    assert code == 2
    assert "is a folder" in err


def test_grade_folder_without_manifest(tmp_path, capsys):
    code, err = _error(["minicanvas", "grade", str(tmp_path), "--json", str(tmp_path / "g.json")], capsys)
    assert code == 2
    assert "no manifest.json" in err
    assert not (tmp_path / "g.json").exists()


def test_console_script_exit_code(tmp_path):
    executable = Path(sys.executable).with_name("mimmu")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "mimmu.cli"]
    result = subprocess.run(
        [*command, "generate", "--model", "nope", "--prompt", "a star", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("mimmu: error: model 'nope'")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["generate"],
        ["erase"],
        ["evaluate"],
        ["mi"],
        ["export"],
        ["benchmark"],
        ["registry"],
        ["registry", "status"],
        ["audit"],
        ["audit", "verify"],
        ["minicanvas"],
        ["minicanvas", "check"],
        ["minicanvas", "grade"],
        ["minicanvas", "train"],
    ],
)
def test_help_on_every_command(command, capsys):
    code, _ = _run([*command, "--help"], capsys)
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concept", "  "], "empty or whitespace"),
        (["--concept", "unicorn"], "appears in none of the"),
        (["--concept", "../star"], "characters other than"),
        ([], "no concept given"),
        (["--concept", "star", "--learning-rate", "nan"], "learning_rate must be a finite number"),
        (["--concept", "star", "--method", "esd", "--preserve-anchors", "0.9"], "preserve_anchors applies to method"),
    ],
)
def test_erase_bad_input(extra, message, tmp_path, capsys):
    out = tmp_path / "erased"
    code, err = _error(["erase", "--out", str(out), *extra], capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 0
    assert not out.exists()


@pytest.mark.parametrize(("option", "value"), [("--method", "salun"), ("--anchor", "random")])
def test_erase_unknown_choice(option, value, tmp_path, capsys):
    code, err = _run(["erase", "--concept", "star", option, value, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert f"invalid choice: '{value}'" in err


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "most"])
def test_erase_preserve_anchors_out_of_range(value, tmp_path, capsys):
    code, err = _run(["erase", "--concept", "star", "--preserve-anchors", value, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--preserve-anchors" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_unknown_erased_folder(tmp_path, capsys):
    code, err = _error(["evaluate", "--erased", str(tmp_path), "--json", str(tmp_path / "m.json")], capsys)
    assert code == 2
    assert "has no erasure.json, so it is not an erased model" in err
    assert not (tmp_path / "m.json").exists()


def test_evaluate_one_mi_image_rejected(tmp_path, capsys):
    code, err = _run(
        ["evaluate", "--erased", str(tmp_path), "--json", str(tmp_path / "m.json"), "--mi-images", "1"], capsys
    )
    assert code == 2
    assert "--mi-images: must be at least 2, got 1" in err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("command", ["generate", "erase", "evaluate", "mi"])
def test_negative_seed_rejected(command, tmp_path, capsys):
    code, err = _run([command, "--seed", "-1"], capsys)
    assert code == 2
    assert "--seed: must be at least 0, got -1" in err


def test_erase_trainable_of_baseline_rejected(tmp_path, capsys):
    out = tmp_path / "o"
    code, err = _error(
        ["erase", "--concept", "star", "--method", "esd", "--trainable", "kv", "--out", str(out)], capsys
    )
    assert code == 2
    assert "trainable 'kv' does not apply to method 'esd'" in err
    assert not out.exists()


def test_mi_json_folder_rejected_before_compute(tmp_path, capsys):
    code, err = _error(
        ["mi", "--prompt", "a red star", "--model", str(tmp_path / "absent"), "--json", str(tmp_path)], capsys
    )
    assert code == 2  # the output is checked first: the missing model would otherwise be the complaint
    assert "is a folder; pass a file path" in err


def test_system_error_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # a path no folder can be made under
    out = loop / "estimate.json"
    code, err = _error(
        ["--quiet", "mi", "--prompt", "a red star", "--num-samples", "2", "--draws", "1", "--json", str(out)], capsys
    )
    assert code == 1
    assert err.count("\n") == 0
    assert err.startswith("mimmu: error: ")
    assert str(loop) in err
    assert "Traceback" not in err


def test_evaluate_missing_erased_folder(tmp_path, capsys):
    missing = tmp_path / "nope"
    code, err = _error(["evaluate", "--erased", str(missing), "--json", str(tmp_path / "m.json")], capsys)
    assert code == 2
    assert f"erased-model folder {str(missing)!r} not found" in err


@pytest.mark.parametrize(("concept", "message"), [("  ", "empty or whitespace"), ("unicorn", "appears in none")])
def test_flow_rejects_concept_before_starting(tmp_path, monkeypatch, capsys, concept, message):
    from flows.erase_concept import EXIT_INVALID_INPUT, main

    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))
    assert main(["--concept", concept]) == EXIT_INVALID_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "home").exists()  # no Prefect or MLflow state was set up


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ("0,0", "repeated erasure seeds in [0, 0]"),
        ("1,-2", "invalid erasure seeds [-2]"),
        ("a", "invalid seed list 'a'"),
    ],
)
def test_benchmark_bad_seeds(tmp_path, capsys, seeds, message):
    out = tmp_path / "b"
    code, err = _run(["benchmark", "--concepts", "star", "--seeds", seeds, "--out", str(out)], capsys)
    assert code == 2
    assert message in err
    assert not out.exists()


def test_benchmark_unknown_method(tmp_path, capsys):
    code, err = _error(
        ["benchmark", "--concepts", "star", "--methods", "mimmu,salun", "--out", str(tmp_path / "b")], capsys
    )
    assert code == 2
    assert "unknown method 'salun'" in err


def test_seed_above_maximum_rejected(capsys):
    code, err = _run(["generate", "--seed", "99999999999999999999"], capsys)
    assert code == 2
    assert "--seed: must be at most 4294967295" in err


def test_mi_needs_two_samples(capsys):
    code, err = _run(["mi", "--prompt", "a red star", "--num-samples", "1"], capsys)
    assert code == 2
    assert "--num-samples: must be at least 2, got 1" in err


def test_unwritable_output_rejected_before_generating(tmp_path, capsys):
    out = Path("/proc/mimmu-test-output")  # /proc accepts no new files, even from root
    code, err = _error(["generate", "--prompt", "a red star", "--num-images", "1", "--out", str(out)], capsys)
    assert code == 2
    assert f"cannot write to {str(out)!r}" in err
    assert "pass a path on a writable disk" in err


def test_evaluate_erased_path_is_a_file(tmp_path, capsys):
    file = tmp_path / "model.txt"
    file.write_text("not a model")
    code, err = _error(["evaluate", "--erased", str(file), "--json", str(tmp_path / "m.json")], capsys)
    assert code == 2
    assert "is a file, not an erased-model folder" in err


def test_benchmark_repeated_method(tmp_path, capsys):
    code, err = _error(
        ["benchmark", "--concepts", "star", "--methods", "uce,uce", "--out", str(tmp_path / "b")], capsys
    )
    assert code == 2
    assert "method 'uce' is given more than once" in err


def test_edited_erasure_record_and_bad_training_log_rejected(tmp_path, capsys):
    import json

    erased = tmp_path / "erased"
    assert main(["--quiet", "erase", "--concept", "star", "--method", "uce", "--out", str(erased)]) == 0
    capsys.readouterr()
    metrics = tmp_path / "m.json"
    (erased / "training.json").write_text("not json")
    code, err = _error(
        ["evaluate", "--erased", str(erased), "--json", str(metrics), "--report", str(tmp_path / "r")], capsys
    )
    assert code == 2
    assert "training.json' is unreadable" in err
    assert "leave out --report" in err
    assert not metrics.exists()  # rejected before the evaluation ran

    record_file = erased / "erasure.json"
    record = json.loads(record_file.read_text())
    record["concepts"] = ["red"]
    record_file.write_text(json.dumps(record))
    code, err = _error(["evaluate", "--erased", str(erased), "--json", str(metrics)], capsys)
    assert code == 2
    assert "was changed after it was written" in err
