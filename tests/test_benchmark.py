"""The benchmark's Markdown table, from result rows written by hand."""

from mimmu.benchmark import markdown_table


def _row(**changes) -> dict:
    row = {
        "concept": "star",
        "method": "mimmu",
        "ee": 1.0,
        "ua": 0.98,
        "ira": 0.973,
        "ira_base": 0.975,
        "cra": 0.985,
        "cra_base": 0.985,
        "worst_retained": 0.021,
        "worst_retained_concept": "circle",
        "paired_psnr_db": 32.1,
        "mi_target_erased": 0.72,
        "mi_target_base": 7.2,
        "mi_retained_erased": 8.8,
        "mi_retained_base": 8.0,
        "mi_target_ratio": 0.1,
        "mi_retained_ratio": 1.1,
        "erase_seconds": 30.5,
        "stderr": {"mi_target_ratio": 0.0061, "mi_retained_ratio": 0.052, "worst_retained": 0.0298},
    }
    row.update(changes)
    return row


def test_table_shows_mi_ratios_with_stderr():
    line = markdown_table([_row()]).splitlines()[2]
    assert "| 0.100 +- 0.006 |" in line
    assert "| 1.100 +- 0.052 |" in line


def test_table_shows_worst_retained_with_stderr():
    line = markdown_table([_row()]).splitlines()[2]
    assert "| 0.021 +- 0.030 (circle) |" in line


def test_table_without_stderr_shows_values_only():
    line = markdown_table([_row(stderr=None)]).splitlines()[2]
    assert "| 0.021 (circle) |" in line
    assert "| 0.100 | 1.100 |" in line
    assert "+-" not in line


def test_table_zero_base_mi_is_nan():
    # evaluate_erased reports the ratio as NaN when the base model has no MI.
    line = markdown_table([_row(mi_target_base=0.0, mi_target_ratio=float("nan"))]).splitlines()[2]
    assert "| nan | 1.100 +- 0.052 |" in line


def test_markdown_table_several_seeds():
    rows = [
        _row(seed=0),
        _row(seed=1, ee=1.1, ira=0.955, worst_retained=0.041, paired_psnr_db=30.1, mi_target_ratio=0.2),
    ]
    table = markdown_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| concept | method | seed | EE |")
    assert lines[2].startswith("| star | mimmu | 0 | 1.000 |")
    assert lines[3].startswith("| star | mimmu | 1 | 1.100 |")
    spread = lines[lines.index("") + 3]
    assert spread.startswith("| star | mimmu | 0, 1 | 1.050 (1.000 to 1.100) | 0.011 (0.002 to 0.020) |")
    assert "| 31.1 (30.1 to 32.1) | 0.150 (0.100 to 0.200) | 1.100 (1.100 to 1.100) |" in spread


def test_markdown_table_one_run_per_method():
    table = markdown_table([_row(seed=1), _row(method="mimmu+seed=2", seed=2)])
    assert "| seed |" in table.splitlines()[0]
    assert "seeds" not in table


def test_benchmark_runs_every_method_once_per_seed(tmp_path, monkeypatch):
    import json

    from mimmu.benchmark import run_benchmark

    monkeypatch.setenv("MIMMU_HOME", str(tmp_path / "home"))
    out = tmp_path / "bench"
    rows = run_benchmark("minicanvas", ["star"], ["uce"], out, num_prompts=8, progress=False, seeds=[0, 3])
    assert [(r["method"], r["seed"]) for r in rows] == [("uce", 0), ("uce", 3)]
    folders = [out / "models" / "star" / "uce" / f"seed-{seed}" for seed in (0, 3)]
    assert [json.loads((f / "erasure.json").read_text())["config"]["seed"] for f in folders] == [0, 3]
    drawn = [json.loads((f / "prompt_set.json").read_text())["forgetting"] for f in folders]
    assert drawn[0] != drawn[1]  # the seed draws the forgetting prompts
    assert json.loads((out / "results.json").read_text())["seeds"] == [0, 3]
    assert "| star | uce | 0, 3 |" in (out / "results.md").read_text()
