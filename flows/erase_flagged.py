"""Erase every newly flagged concept: those in data/concepts.yaml that production has not erased.

    python -m flows.erase_flagged [--registry data/concepts.yaml] [--model minicanvas]

Each concept runs the erase-concept flow as a subflow, one after another, so every
candidate builds on the production model the previous one left. Deployed on a
schedule (see infra/prefect.yaml), this is the nightly job.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from mimmu.errors import MimmuError


def read_flagged(path: Path) -> list[dict]:
    """Return the flagged concepts of a concept registry file, each with name, flagged_by, flagged_at, reason."""
    path = Path(path)
    if not path.is_file():
        raise MimmuError(f"concept registry {str(path)!r} not found; pass --registry")
    entries = (yaml.safe_load(path.read_text()) or {}).get("concepts") or []
    for entry in entries:
        missing = sorted({"name", "flagged_by", "flagged_at", "reason"} - set(entry))
        if missing:
            raise MimmuError(
                f"{path}: concept {entry.get('name')!r} lacks {missing}; every entry records who flagged it, when and why"
            )
    return entries


def build_flow():
    """Return the Prefect flow that erases the flagged concepts."""
    from prefect import flow, get_run_logger

    from flows.erase_concept import build_flow as build_erase_concept
    from mimmu.registry import registry_status

    erase_concept = build_erase_concept()

    @flow(name="erase-flagged")
    def erase_flagged(
        registry: str = "data/concepts.yaml", model: str = "minicanvas", params: str = "params.yaml"
    ) -> list[dict]:
        """Run erase-concept for each flagged concept that production has not erased yet."""
        log = get_run_logger()
        results = []
        for entry in read_flagged(Path(registry)):
            production = registry_status(model).get("production") or {}
            if entry["name"] in production.get("erased_concepts", []):
                continue
            log.info(
                "erasing %s (flagged by %s on %s: %s)",
                entry["name"],
                entry["flagged_by"],
                entry["flagged_at"],
                entry["reason"],
            )
            results.append(erase_concept(concept=entry["name"], model=model, params=params))
        return results

    return erase_flagged


def main(argv: list[str] | None = None) -> int:
    """Run the flow; exit 0 when every erasure was promoted, 3 when any was rejected."""
    from flows.erase_concept import EXIT_INVALID_INPUT, EXIT_REJECTED, _configure_state

    parser = argparse.ArgumentParser(
        prog="python -m flows.erase_flagged", description="Erase every newly flagged concept."
    )
    parser.add_argument(
        "--registry", default="data/concepts.yaml", help="concept registry file (default data/concepts.yaml)"
    )
    parser.add_argument("--model", default="minicanvas", help="base model (default minicanvas)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _configure_state()
    try:
        results = build_flow()(registry=args.registry, model=args.model, params=args.params)
    except MimmuError as error:
        print(f"mimmu: error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    for result in results:
        print(f"{', '.join(result.get('concepts', []))}: {result['decision']} (version {result.get('version')})")
    return EXIT_REJECTED if any(r["decision"] == "rejected" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
