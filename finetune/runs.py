"""Run folders: a new folder per run (never an existing one), the resolved recipe, metrics, results.

A run folder holds everything needed to understand and reproduce the run:

    recipe.yaml     the fully resolved recipe (re-running it reproduces the run)
    metrics.jsonl   every training log and evaluation, one JSON object per line
    results.json    final and best validation metrics, best step, time, throughput, memory
    model/          the best model and tokenizer, in Hugging Face format
    *.png           plots of the learning rate, losses and validation metric
"""

from __future__ import annotations

import json
import platform
import resource
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .errors import FinetuneError
from .recipe import Recipe

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
MODEL_DIR = "model"


def default_run_dir(recipe: Recipe, now: datetime | None = None) -> Path:
    """`<output.root>/<recipe name>-<YYYYmmdd-HHMMSS>`, with a suffix if that exists already."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(recipe.output.root) / f"{recipe.name or 'run'}-{stamp}"
    candidate, n = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def create_run_dir(recipe: Recipe) -> Path:
    """Create the run folder; an existing `output.dir` is an error, never overwritten."""
    if recipe.output.dir is not None:
        path = Path(recipe.output.dir)
        if path.exists():
            raise FinetuneError(
                f"output.dir: {path} already exists; finetune never overwrites a run. Choose a new folder "
                f"(e.g. output.dir={path}-2) or leave output.dir unset for a timestamped one."
            )
    else:
        path = default_run_dir(recipe)
    path.mkdir(parents=True)
    return path


def write_recipe(run_dir: Path, recipe: Recipe, source: str | None = None) -> Path:
    """Write the resolved recipe, with a header saying where it came from."""
    header = [
        "# Resolved recipe of this run: every key, defaults included.",
        f"# Source: {source}" if source else "# Source: (in memory)",
        "# Re-run it with: finetune train <this file> output.dir=<new folder>",
    ]
    body = yaml.safe_dump(recipe.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    path = run_dir / RECIPE_FILE
    path.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_results(run_dir: Path, results: dict[str, Any]) -> Path:
    path = run_dir / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def environment() -> dict[str, str]:
    """Library versions and machine, recorded with every run."""
    import accelerate
    import datasets
    import torch
    import transformers

    from . import __version__

    return {
        "finetune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "device": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"cpu ({platform.machine()})",
    }
