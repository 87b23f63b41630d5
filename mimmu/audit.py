"""An append-only, hash-chained audit log of registry decisions.

Each line is a JSON record with `previous_hash` (the hash of the line before) and
`hash` = SHA-256 of the record's canonical JSON without `hash`. Changing, removing or
reordering any line breaks the chain, which `verify_log` detects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mimmu.errors import MimmuError
from mimmu.io import write_text_atomic

GENESIS = "0" * 64


def _record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_log(path: Path) -> list[dict]:
    """Return the records of an audit log (empty when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise MimmuError(f"audit log {str(path)!r} is not a file; move what is there and rerun")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_record(path: Path, record: dict) -> dict:
    """Append `record` to the log at `path` atomically and return it with its chain fields."""
    records = read_log(path)
    entry = {**record, "previous_hash": records[-1]["hash"] if records else GENESIS}
    entry["hash"] = _record_hash(entry)
    lines = [json.dumps(r, sort_keys=True) for r in [*records, entry]]
    write_text_atomic(Path(path), "\n".join(lines) + "\n")
    return entry


def verify_log(path: Path) -> int:
    """Check the chain of an audit log; return the number of records or raise naming the first bad line."""
    previous = GENESIS
    records = read_log(path)
    for number, record in enumerate(records, start=1):
        if record.get("previous_hash") != previous or record.get("hash") != _record_hash(record):
            raise MimmuError(f"audit log {str(path)!r} was altered at line {number}; restore it from a copy")
        previous = record["hash"]
    return len(records)
