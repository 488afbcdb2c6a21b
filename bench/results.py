"""The results file: flat, dotted keys merged into bench/results/latest.json, so other benchmarks can add theirs."""
from __future__ import annotations

import json
import math
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "latest.json"


def merge_results(figures: dict, path: Path = RESULTS_PATH) -> dict:
    """Write `figures` over the keys already in the file (other keys are kept) and return the whole content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        existing = {}
    existing.update(_finite(figures))
    path.write_text(json.dumps(existing, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return existing


def _finite(value):
    """JSON has no NaN: a figure that could not be measured is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
