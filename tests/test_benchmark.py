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
        "erase_seconds": 30.5,
        "stderr": {"mi_target_ratio": 0.0061, "mi_retained_ratio": 0.052},
    }
    row.update(changes)
    return row


def test_table_shows_mi_ratios_with_stderr():
    line = markdown_table([_row()]).splitlines()[2]
    assert "| 0.100 +- 0.006 |" in line
    assert "| 1.100 +- 0.052 |" in line


def test_table_without_stderr_shows_ratio_only():
    line = markdown_table([_row(stderr=None)]).splitlines()[2]
    assert "| 0.100 | 1.100 |" in line
    assert "+-" not in line


def test_table_zero_base_mi_is_nan():
    line = markdown_table([_row(mi_target_base=0.0)]).splitlines()[2]
    assert "| nan | 1.100 +- 0.052 |" in line
