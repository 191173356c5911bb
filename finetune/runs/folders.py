"""Run folders: a new folder per run (never an existing one), the resolved recipe, metrics, results.

A run folder holds everything needed to understand and reproduce the run:

    recipe.yaml     the fully resolved recipe (re-running it reproduces the run)
    data_files.json the SHA-256 of every data file read (a resume warns when one changed)
    metrics.jsonl   every training log and evaluation, one JSON object per line
    results.json    final and best validation metrics, best step, time, throughput, memory
    model/          the best model and tokenizer, in Hugging Face format
    *.png           plots of the learning rate, losses and validation metric
    checkpoints/    full training state, for resuming (see training/checkpoints.py)

Only the main process of a multi-process run writes here.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import resource
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from finetune.errors import FinetuneError
from finetune.recipe import Recipe

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
MODEL_DIR = "model"
DATA_FILES = "data_files.json"


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
    """Create the run folder; an existing `output.dir` is an error, never overwritten.

    The folder is claimed by `mkdir` itself (it fails if the folder exists), not by a check before it:
    two runs started in the same second would otherwise both pick, and share, the same default name.
    """
    if recipe.output.dir is not None:
        path = Path(recipe.output.dir)
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            raise FinetuneError(
                f"output.dir: {path} already exists; finetune never overwrites a run. Choose a new folder "
                f"(e.g. output.dir={path}-2) or leave output.dir unset for a timestamped one."
                + _existing_run_hint(path)
            ) from None
        return path
    base = default_run_dir(recipe)
    path, n = base, 2
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:  # taken since default_run_dir looked: try the next suffix
            path = base.with_name(f"{base.name}-{n}")
            n += 1


def _existing_run_hint(path: Path) -> str:
    """What to do with an `output.dir` that exists: continue its run, or delete a run that never started."""

    if complete_checkpoints(checkpoints_dir(path)):
        return f" To continue its run from its last checkpoint: finetune train --resume {path}"
    if (path / RECIPE_FILE).is_file() and not (path / RESULTS_FILE).is_file():
        return (
            f" It holds a run that stopped before its first checkpoint; to start it again in this folder, "
            f"delete it first if nothing in it is needed: rm -r {path}"
        )
    return ""


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


def write_atomically(path: Path, text: str) -> None:
    """Write a file under a temporary name, flush it to disk, rename it and flush the folder: a reader,
    or a machine that lost power, finds the old file or the new one, never half of one. The name is
    per process, so workers sharing a folder (a sweep's) never write into each other's."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (a rename or a new file in it), to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under `folder`, and `folder` itself: before renaming it into place."""
    for path in sorted(folder.rglob("*"), reverse=True):  # deepest first, each folder after its entries
        fsync_path(path)
    fsync_path(folder)


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Drop `metrics.jsonl` records after `step` (a resumed run logs them again), and the stopped
    attempt's end-of-training summary, which is no end of the run; returns how many were dropped."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return 0
    records = read_metrics(run_dir)
    kept = [record for record in during_training(records) if record["step"] <= step]
    write_atomically(path, "".join(json.dumps(record) + "\n" for record in kept))
    return len(records) - len(kept)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_file_hashes(sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Path, size and SHA-256 of each data source that is a local file (hub ids are skipped)."""
    hashes = {}
    for split, source in sources.items():
        path = Path(source)
        if path.is_file():
            hashes[split] = {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return hashes


def record_data_files(run_dir: Path, sources: dict[str, str]) -> None:
    """Write `data_files.json`, so a later resume can tell whether the data changed."""
    write_atomically(run_dir / DATA_FILES, json.dumps(data_file_hashes(sources), indent=2) + "\n")


def changed_data_files(run_dir: Path, sources: dict[str, str]) -> list[str]:
    """One line per data file whose content differs from what the run recorded when it started."""
    path = run_dir / DATA_FILES
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text(encoding="utf-8"))
    now = data_file_hashes(sources)
    changes = []
    for split, before in recorded.items():
        after = now.get(split)
        if after is None:
            changes.append(f"{split}: {before['path']} is no longer read")
        elif after["sha256"] != before["sha256"]:
            changes.append(
                f"{split}: {after['path']} changed since the run started "
                f"({before['bytes']:,} -> {after['bytes']:,} bytes, sha256 {before['sha256'][:12]} -> "
                f"{after['sha256'][:12]})"
            )
    return changes


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def during_training(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records up to the Trainer's end-of-training summary (not the re-check of the best weights)."""
    end = next((i for i, r in enumerate(records) if "train_loss" in r), len(records))  # the summary
    return records[:end]


def write_results(run_dir: Path, results: dict[str, Any]) -> Path:
    path = run_dir / RESULTS_FILE
    write_atomically(path, json.dumps(results, indent=2, sort_keys=False) + "\n")
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

    from finetune import __version__

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


CHECKPOINTS_DIR = "checkpoints"


STATE_FILE = "finetune_state.json"


TRAINER_STATE_FILE = "trainer_state.json"


TMP_PREFIX = ".tmp-"


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS_DIR


def is_complete(folder: Path) -> bool:
    """A checkpoint folder that was renamed into place: the right name and its state files."""
    return (
        _CHECKPOINT.match(folder.name) is not None
        and (folder / STATE_FILE).is_file()
        and (folder / TRAINER_STATE_FILE).is_file()
    )


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest step first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def remove_stale_partials(folder: Path) -> None:
    """Delete `.tmp-` leftovers of a crashed write (the main process calls it, before resuming)."""
    if folder.is_dir():
        for leftover in folder.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
