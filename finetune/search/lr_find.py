"""`finetune lr-find`: the learning-rate range test (Smith, 2017, "Cyclical Learning Rates for
Training Neural Networks", section 3.3).

Train for a few steps while the learning rate grows exponentially from `start_lr` to `end_lr`,
record the training loss of every step, smooth it with an exponential moving average (bias
corrected, as in Adam), and stop once the smoothed loss exceeds `diverge` times its minimum.
Two suggestions are read off the curve:

- **steepest**: the LR where the smoothed loss falls fastest (most negative slope against log LR),
  looked for before the minimum;
- **min/10**: the LR of the smallest smoothed loss divided by ten (fastai's rule of thumb).

The test runs on the recipe's own model, data, freezing, optimizer groups, loss and gradient
clipping (all from the `RecipeTrainer` a run would use), and leaves no trace: the weights, the
optimizer state and the random-number generators are restored afterwards. Layer-wise LR groups
are scaled together, so their ratios stay those of the recipe and the LR shown is `optimizer.lr`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from finetune.errors import FinetuneError
from finetune.recipe import Recipe

if TYPE_CHECKING:
    import torch

CSV_FILE = "lr_find.csv"
PLOT_FILE = "lr_find.png"
SUGGESTIONS = ("steepest", "min/10")


@dataclass
class RangeTest:
    """The curve of a range test and what it suggests."""

    lrs: list[float]  # the LR of each step (for `optimizer.lr`; other groups keep their ratio to it)
    losses: list[float]  # raw training loss of each step
    smoothed: list[float]  # bias-corrected EMA of the loss
    stop_reason: str
    suggestions: dict[str, float | None] = field(default_factory=dict)  # "steepest", "min/10"
    reference_lr: float | None = None  # the recipe's optimizer.lr the groups' ratios are measured from

    @property
    def min_loss_lr(self) -> float | None:
        finite = [(s, lr) for s, lr in zip(self.smoothed, self.lrs) if math.isfinite(s)]
        return min(finite)[1] if finite else None


def exponential_lrs(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """`steps` learning rates from `start_lr` to `end_lr`, evenly spaced on a log scale."""
    if not 0 < start_lr < end_lr:
        raise FinetuneError(f"lr-find: need 0 < --min < --max, got --min {start_lr} and --max {end_lr}")
    if steps < 2:
        raise FinetuneError(f"lr-find: --steps must be at least 2, got {steps}")
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


@contextlib.contextmanager
def restored(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Run a block, then put back the weights, the optimizer state and the torch RNG state.

    The copies are kept on the CPU (memory, not GPU memory, pays for them).
    """
    import torch

    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            model.load_state_dict(weights)
            optimizer.load_state_dict(optimizer_state)
            model.train(was_training)


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Any],
    loss_of: Callable[[Any], torch.Tensor],
    lrs: list[float],
    reference_lr: float | None = None,
    beta: float = 0.9,
    diverge: float = 4.0,
    clip_grad_norm: float | None = None,
    accumulation: int = 1,
    progress: Callable[[int, float, float], None] | None = None,
) -> RangeTest:
    """Take one optimizer step at each LR of `lrs`, recording the loss; restore everything after.

    `loss_of(batch)` returns the training loss of one batch. Each group's LR is its own LR times
    `lr / reference_lr` (default: the largest group LR), so layer-wise ratios are kept.
    `accumulation` batches make one step, as with gradient accumulation in training.
    """
    if not 0 <= beta < 1:
        raise FinetuneError(f"lr-find: --smoothing must be in [0, 1), got {beta}")
    if diverge <= 1:
        raise FinetuneError(f"lr-find: --diverge must be greater than 1, got {diverge}")
    bases = [group["lr"] for group in optimizer.param_groups]
    reference = reference_lr or max(bases)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    seen, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    stop_reason = f"reached --max after {len(lrs)} steps"
    with restored(model, optimizer):
        model.train()
        for step, lr in enumerate(lrs):
            for group, base in zip(optimizer.param_groups, bases):
                group["lr"] = base * lr / reference
            loss = _accumulated_step(batches, loss_of, optimizer, params, accumulation, clip_grad_norm)
            average = beta * average + (1 - beta) * loss
            value = average / (1 - beta ** (step + 1))  # bias correction (Kingma & Ba, 2015)
            seen.append(lr)
            losses.append(loss)
            smoothed.append(value)
            best = min(best, value)
            if progress is not None:
                progress(step, lr, value)
            if not math.isfinite(value):
                stop_reason = f"loss is not finite at lr {lr:.2e}"
                break
            if value > diverge * best:
                stop_reason = f"smoothed loss above {diverge:g} x its minimum at lr {lr:.2e}"
                break
    result = RangeTest(lrs=seen, losses=losses, smoothed=smoothed, stop_reason=stop_reason)
    result.suggestions = suggest(result.lrs, result.smoothed)
    return result


def _accumulated_step(
    batches: Iterator[Any],
    loss_of: Callable[[Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    accumulation: int,
    clip_grad_norm: float | None,
) -> float:
    """One optimizer step over `accumulation` batches; returns their mean loss."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(accumulation):
        loss = loss_of(next(batches))
        (loss / accumulation).backward()
        total += float(loss.detach())
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
    optimizer.step()
    return total / accumulation


def suggest(lrs: list[float], smoothed: list[float]) -> dict[str, float | None]:
    """The steepest-descent LR (looked for up to the minimum) and the minimum's LR divided by 10.

    The slope is taken against log10(LR) with `numpy.gradient`, skipping the first tenth of the
    steps; both need a few finite points.
    """
    import numpy as np

    values = np.asarray(smoothed, dtype=float)
    finite = np.isfinite(values)
    if finite.sum() < 3:
        return dict.fromkeys(SUGGESTIONS)
    last = int(np.flatnonzero(finite)[-1]) + 1
    values, logs = values[:last], np.log10(np.asarray(lrs[:last], dtype=float))
    lowest = int(np.nanargmin(values))
    skip = len(lrs) // 10  # the first steps: the average has seen few batches, its slope is noise
    steepest = None
    if lowest - skip >= 2:
        slopes = np.gradient(values[skip : lowest + 1], logs[skip : lowest + 1])
        steepest = float(lrs[skip + int(np.argmin(slopes))])
    return {"steepest": steepest, "min/10": float(lrs[lowest]) / 10}


def cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches from a data loader forever, re-iterating it (a new shuffle) each time it ends."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise FinetuneError("lr-find: the training data gave no batches")


# ---------------------------------------------------------------------------------------------
# The range test on a recipe


def find_lr(
    recipe: Recipe,
    output: Path | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 1e-2,
    steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
) -> tuple[RangeTest, Path]:
    """Run the range test on the recipe's model, data, freezing, optimizer and loss.

    Writes `lr_find.csv` and `lr_find.png` into a new folder (`output`, or
    `<output.root>/lr-find-<recipe name>-<timestamp>`) and returns the test and the folder.
    """
    import shutil

    from finetune.distributed.processes import say
    from finetune.training.run import prepare

    lrs = exponential_lrs(start_lr, end_lr, steps)
    folder = create_output_dir(output, recipe)
    try:  # the data, model, freezing, adapters and trainer a run of this recipe would have
        run = prepare(recipe, folder)
    except FinetuneError:
        shutil.rmtree(folder, ignore_errors=True)  # a refused start leaves nothing behind
        raise
    trainer, frozen, data, recipe = run.trainer, run.frozen, run.data, run.recipe  # `auto` resolved
    _remove_if_empty(folder / "checkpoints")  # the Trainer makes its output folder; we save nothing there
    accumulation = trainer.args.gradient_accumulation_steps
    say(
        f"lr-find: {steps} steps from {start_lr:.1e} to {end_lr:.1e} on {recipe.model.name} "
        f"({frozen.line()}), {len(data.train):,} training examples, "
        f"batch {trainer.args.per_device_train_batch_size}"
        + (f" x {accumulation} accumulated" if accumulation > 1 else "")
    )
    with _progress_bar(steps) as progress:
        test = range_test(
            trainer.model,
            trainer.create_optimizer(),
            cycle(trainer.get_train_dataloader()),
            trainer_loss(trainer),
            lrs,
            reference_lr=recipe.optimizer.lr,
            beta=beta,
            diverge=diverge,
            clip_grad_norm=recipe.regularization.clip_grad_norm,
            accumulation=accumulation,
            progress=progress,
        )
    test.reference_lr = recipe.optimizer.lr
    write_csv(test, folder / CSV_FILE)
    plot_range_test(test, folder / PLOT_FILE, title=f"LR range test: {recipe.name or 'recipe'}")
    return test, folder


def trainer_loss(trainer: Any) -> Callable[[Any], torch.Tensor]:
    """The training loss of one batch exactly as the trainer computes it (bf16 autocast if it uses bf16)."""
    import torch

    model = trainer.model
    device = trainer.args.device.type

    def loss_of(batch: dict[str, Any]) -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=device, dtype=torch.bfloat16)
            if trainer.args.bf16
            else contextlib.nullcontext()
        )
        batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
        with autocast:
            return trainer.compute_loss(model, batch)

    return loss_of


@contextlib.contextmanager
def _progress_bar(steps: int) -> Iterator[Callable[[int, float, float], None]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="lr-find", unit="step")

    def update(step: int, lr: float, smoothed: float) -> None:
        bar.update(1)
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{smoothed:.4f}")

    try:
        yield update
    finally:
        bar.close()


def create_output_dir(output: Path | None, recipe: Recipe) -> Path:
    """A new folder for the test's files; an existing one is never written into."""
    from finetune.runs.folders import default_run_dir

    folder = output or default_run_dir(
        recipe.model_copy(update={"name": f"lr-find-{recipe.name or 'recipe'}"})
    )
    if folder.exists():
        raise FinetuneError(f"lr-find: --output {folder} already exists; choose a new folder")
    folder.mkdir(parents=True)
    return folder


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def describe(test: RangeTest) -> list[str]:
    """What the test found, in a few lines for the terminal."""
    lines = [f"stopped: {test.stop_reason}"]
    steepest, tenth = test.suggestions.get("steepest"), test.suggestions.get("min/10")
    lines.append(
        f"steepest descent: lr {steepest:.2e}" if steepest else "steepest descent: none (the loss never fell)"
    )
    if tenth is not None:
        lines.append(f"min loss / 10:    lr {tenth:.2e} (smoothed loss lowest at {test.min_loss_lr:.2e})")
    return lines


# ---------------------------------------------------------------------------------------------
# Output: CSV, plot, a recipe with the suggested LR


def write_csv(result: RangeTest, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        for step, (lr, loss, value) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            writer.writerow([step, f"{lr:.6e}", f"{loss:.6f}", f"{value:.6f}"])
    return path


def plot_range_test(result: RangeTest, path: Path, title: str = "LR range test") -> Path:
    """Loss against LR on a log axis, raw and smoothed, with the suggestions marked."""
    from finetune.runs.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    colors = {"steepest": "tab:red", "min/10": "tab:green"}
    for name, lr in result.suggestions.items():
        if lr is not None:
            ax.axvline(lr, color=colors[name], linestyle="--", label=f"{name}: {lr:.2e}")
    ax.set_xscale("log")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:  # keep the divergence from squashing the interesting part
        low, high = min(finite), max(finite[0], min(max(finite), 2 * finite[0]))
        pad = 0.1 * (high - low or 1.0)
        ax.set_ylim(low - pad, high + pad)
    ax.set(xlabel="learning rate (optimizer.lr)", ylabel="training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_recipe_with_lr(
    recipe: Recipe, lr: float, path: Path, note: str, reference_lr: float | None = None
) -> Path:
    """A resolved copy of `recipe` with `optimizer.lr` set (and no fixed `output.dir`).

    The range test scaled every parameter group by `lr / optimizer.lr`, explicit `layer_lr.lrs`
    included, so those are scaled by the same factor: the written recipe trains what was tested.
    `reference_lr` is the optimizer.lr the test ran with (what `optimizer.lr: auto` resolved to).
    """
    from finetune.recipe import validate_recipe

    data = recipe.to_yaml_dict()
    data["optimizer"]["lr"] = float(f"{lr:.3g}")
    data["output"]["dir"] = None
    factor = lr / (reference_lr or recipe.optimizer.lr)
    explicit = data.get("layer_lr", {}).get("lrs") or {}
    if explicit:
        data["layer_lr"]["lrs"] = {block: float(f"{value * factor:.3g}") for block, value in explicit.items()}
        note += f"; layer_lr.lrs scaled with it (x {factor:.3g})"
    validate_recipe(data, source=str(path))
    if path.exists():
        raise FinetuneError(f"lr-find: --write {path} already exists; choose a new file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {note}\n# Train it with: finetune train {path}\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
