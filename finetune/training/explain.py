"""`finetune explain`: what a recipe will do to a model, shown before any training.

One row per block (embeddings, each layer, pooler, head): parameters, trainable or frozen, train or
eval mode, the peak learning rate and weight decay of its optimizer groups, when it unfreezes and
whether it is re-initialised; totals (trainable share, optimizer-state memory); the schedule's LR at
key steps; and `<recipe>.explain.png`, the per-block LRs as bars (frozen blocks grey) next to the schedule.
A recipe author sees exactly what the recipe will do before spending GPU hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finetune.errors import FinetuneError
from finetune.recipe import Recipe, shipped_recipes_dir


def state_slots(spec: Any) -> tuple[int, str]:
    """fp32 values an optimizer keeps per trainable parameter, and how to read that number."""
    momentum = getattr(spec, "momentum", None)
    momentum = momentum if momentum is not None else (0.9 if spec.name == "sgd" else 0.0)
    known = {
        "adamw": (2, "two moments"),
        "adam": (2, "two moments"),
        "sgd": (1 if momentum else 0, "momentum buffer" if momentum else "no state"),
        "rmsprop": (2 if momentum else 1, "square average" + (" and momentum" if momentum else "")),
        "adagrad": (1, "sum of squares"),
        "adafactor": (0, "factored: about rows + columns per matrix, ignored here"),
    }
    return known.get(spec.name, (2, "assumed, as for AdamW"))


NOMINAL_STEPS = 1000


@dataclass
class Explanation:
    """What `explain` found: table rows, totals, the schedule at key steps, the plot written."""

    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    schedule: list[dict[str, Any]]
    total_steps: int
    steps_source: str
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)


def infer_num_labels(recipe: Recipe) -> int:
    """Number of labels from the recipe's training data when it can be read; else 2."""
    return read_data(recipe)[0]


def read_data(recipe: Recipe) -> tuple[int, int | None]:
    """(number of labels, training examples) from the recipe's data; (2 or 1, None) without data."""
    fallback = 1 if recipe.model.task == "regression" else 2
    if recipe.data.train is None and recipe.data.hub is None:
        return fallback, None
    from finetune.data.task_data import load_task_data

    data = load_task_data(recipe.data, recipe.model.task, recipe.training.seed)
    return (1 if recipe.model.task == "regression" else data.num_labels), len(data.train)


def plan_steps(recipe: Recipe, train_examples: int | None, steps: int | None) -> tuple[int, int, str]:
    """(total optimizer steps, steps per epoch, where the count comes from), single process."""
    from finetune.layers.unfreezing import steps_per_epoch

    training = recipe.training
    if train_examples is not None:
        per_epoch = steps_per_epoch(
            math.ceil(train_examples / training.batch_size), training.gradient_accumulation_steps
        )
        total = training.max_steps or math.ceil(training.epochs * per_epoch)
        source = f"{train_examples:,} training examples, batch {training.batch_size}"
    elif steps is not None or training.max_steps is not None:
        total = steps or training.max_steps
        per_epoch = max(1, math.ceil(total / training.epochs))
        source = "--steps" if steps is not None else "training.max_steps"
    else:
        total, per_epoch = NOMINAL_STEPS, max(1, math.ceil(NOMINAL_STEPS / training.epochs))
        source = f"nominal {NOMINAL_STEPS} steps (no data: pass --steps N)"
    if steps is not None:
        total, source = steps, "--steps"
    return total, per_epoch, source


def group_settings(anatomy: Any, groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Block -> the peak LR and the weight decays of the optimizer groups its parameters are in."""
    owner = {name: block for block, names in anatomy.blocks.items() for name in names}
    settings: dict[str, dict[str, Any]] = {}
    for group in groups:
        for block in {owner[name] for name in group["names"]}:
            entry = settings.setdefault(block, {"lr": group["lr"], "weight_decay": set()})
            entry["weight_decay"].add(group["weight_decay"])
    return settings


def block_rows(
    model: Any, anatomy: Any, summary: Any, groups: list[dict[str, Any]], context: dict
) -> list[dict]:
    """One row per anatomy block: size, state, mode, LR, weight decay, when it unfreezes, re-init."""
    parameters = dict(model.named_parameters())
    settings = group_settings(anatomy, groups)
    rows = []
    for block, names in anatomy.blocks.items():
        count = sum(parameters[n].numel() for n in names)
        trainable = sum(parameters[n].numel() for n in names if parameters[n].requires_grad)
        trainable += sum(parameters[n].numel() for n in summary.pending.get(block, []))
        state = "waits" if block in summary.pending else block_state(trainable, count)
        setting = settings.get(block)
        rows.append(
            {
                "block": block,
                "parameters": count,
                "trainable": trainable,
                "state": state,
                "mode": "eval" if block in context["eval_blocks"] else "train",
                "lr": setting["lr"] if setting else None,
                "weight_decay": sorted(setting["weight_decay"], reverse=True) if setting else None,
                "unfreezes": unfreeze_text(block, state, context),
                "reinit": block in context["reinit"],
            }
        )
    return rows


def block_state(trainable: int, count: int) -> str:
    if trainable == count:
        return "trainable"
    return "frozen" if trainable == 0 else "partly frozen"


def unfreeze_text(block: str, state: str, context: dict) -> str:
    if state == "frozen":
        return "never"
    step = context["unfreeze_steps"].get(block)
    if step is None:
        return "start"
    epoch = step / context["steps_per_epoch"]
    late = " (after the run)" if step >= context["total_steps"] else ""
    return f"step {step} (epoch {epoch:.3g}){late}"


def totals(rows: list[dict[str, Any]], model: Any, optimizer: Any) -> dict[str, Any]:
    """Parameter totals at the start and once every waiting block has unfrozen; optimizer memory."""
    total = sum(p.numel() for p in model.parameters())
    at_start = sum(p.numel() for p in model.parameters() if p.requires_grad)
    eventually = at_start + sum(r["trainable"] for r in rows if r["state"] == "waits")
    slots, meaning = state_slots(optimizer)
    return {
        "parameters": total,
        "trainable_at_start": at_start,
        "trainable": eventually,
        "trainable_share": eventually / total if total else 0.0,
        "optimizer_state_bytes": slots * 4 * eventually,
        "optimizer_state_slots": slots,
        "optimizer_state_meaning": meaning,
    }


def schedule_points(
    recipe: Recipe, total_steps: int, peak_lr: float, steps_per_epoch: int
) -> list[dict[str, Any]]:
    """The head's LR at the first step, the end of warmup, a quarter, half, three quarters, the last step."""
    from finetune.schedules.formulas import lr_factor, warmup_steps

    factor = lr_factor(recipe.schedule, total_steps, peak_lr, steps_per_epoch)
    warmup = warmup_steps(recipe.schedule, total_steps)
    marks = {"first step": 0, "warmup end": warmup} if warmup else {"first step": 0}
    for share in (0.25, 0.5, 0.75):
        marks[f"{share:.0%} of steps"] = int(share * total_steps)
    marks["last step"] = total_steps - 1
    points = sorted(marks.items(), key=lambda item: item[1])
    return [{"at": label, "step": step, "lr": peak_lr * factor(step)} for label, step in points]


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return " / ".join(_cell(v) for v in value)
    return str(value)


def explain(
    recipe: Recipe,
    num_labels: int | None = None,
    steps: int | None = None,
    plot: str | Path | None = None,
    show_recipe: bool = True,
) -> Explanation:
    """Print what `recipe` will do to its model (no training), then the resolved recipe; write the
    plot to `plot` unless it is None."""
    from finetune.distributed.sharding import sharding_note
    from finetune.layers.reinit import reinit_blocks
    from finetune.layers.surgery import apply_layer_sections
    from finetune.model.anatomy import model_anatomy
    from finetune.model.loading import load_model
    from finetune.model.peft import add_adapters
    from finetune.optimizer.param_groups import param_groups
    from finetune.training.defaults import resolve_auto

    labels, examples = (num_labels, None) if num_labels is not None else read_data(recipe)
    model = load_model(recipe.model, labels, None, recipe.regularization)
    resolution = resolve_auto(recipe, model.config, examples)  # what `auto` becomes for this model
    recipe = resolution.recipe
    total_steps, per_epoch, source = plan_steps(recipe, examples, steps)
    summary = apply_layer_sections(model, recipe)
    add_adapters(model, recipe.peft, recipe.model.task, summary.frozen_blocks)  # peft: blocks show adapters
    try:
        anatomy = model_anatomy(model)
    except FinetuneError as error:  # unknown architecture, regex freezing: totals only
        anatomy, summary.notes = None, [*summary.notes, str(error)]
    later = {n for names in summary.pending.values() for n in names}
    groups = param_groups(model, recipe.optimizer, recipe.layer_lr, later)
    unfreezing = summary.unfreezing
    context = {
        "eval_blocks": set(summary.eval_guard.blocks) if summary.eval_guard else set(),
        "reinit": set(reinit_blocks(recipe.reinit, anatomy))
        if anatomy and recipe.reinit.is_active()
        else set(),
        "unfreeze_steps": unfreezing.plan(per_epoch) if unfreezing else {},
        "steps_per_epoch": per_epoch,
        "total_steps": total_steps,
    }
    rows = block_rows(model, anatomy, summary, groups, context) if anatomy else []
    result = Explanation(
        rows=rows,
        totals=totals(rows, model, recipe.optimizer),
        schedule=schedule_points(recipe, total_steps, recipe.optimizer.lr, per_epoch),
        total_steps=total_steps,
        steps_source=source,
        notes=[*resolution.notes, *summary.notes, *sharding_note(recipe.distributed, model)],
    )
    print_explanation(recipe, model, labels, result)
    if show_recipe:
        print("\n# resolved recipe")
        print(yaml.safe_dump(recipe.to_yaml_dict(), sort_keys=False), end="")
    if plot is not None and rows:
        result.plot = plot_explanation(recipe, result, anatomy, Path(plot), per_epoch)
        print(f"\nwrote {result.plot}")
    return result


def default_plot_path(recipe_file: Path) -> Path:
    """`<recipe>.explain.png` beside the recipe file; in the working directory for a shipped recipe."""
    shipped = recipe_file.resolve().is_relative_to(shipped_recipes_dir().resolve())
    return (Path.cwd() if shipped else recipe_file.parent) / f"{recipe_file.stem}.explain.png"


def print_explanation(recipe: Recipe, model: Any, labels: int, result: Explanation) -> None:
    print(f"\n# model: {recipe.model.name} ({model.config.model_type}), {labels} output(s)")
    if result.rows:
        columns = ["block", "parameters", "trainable", "state", "mode", "lr", "weight_decay", "unfreezes"]
        if any(r["reinit"] for r in result.rows):
            columns.append("reinit")
        print(format_table(result.rows, columns))
    for note in result.notes:
        print(f"note: {note}")
    t = result.totals
    print(
        f"\ntrainable {t['trainable']:,} / total {t['parameters']:,} ({t['trainable_share']:.1%})"
        + (f"; {t['trainable_at_start']:,} at the start" if t["trainable_at_start"] != t["trainable"] else "")
    )
    print(
        f"optimizer state: {t['optimizer_state_bytes'] / 2**20:,.1f} MiB "
        f"({recipe.optimizer.name}: {t['optimizer_state_slots']} fp32 values per trainable parameter, "
        f"{t['optimizer_state_meaning']})"
    )
    print(
        f"\n# schedule: {recipe.schedule.name}, {result.total_steps:,} optimizer steps "
        f"({result.steps_source})"
    )
    print(format_table(result.schedule, ["at", "step", "lr"]))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_explanation(
    recipe: Recipe, result: Explanation, anatomy: Any, path: Path, steps_per_epoch: int
) -> Path:
    """Per-block peak LR as bars (frozen blocks grey, at the LR they would have), and the schedule."""
    from finetune.optimizer.param_groups import block_learning_rates
    from finetune.schedules.formulas import lr_curve

    would_be = block_learning_rates(anatomy, recipe.optimizer.lr, recipe.layer_lr)
    plt = _pyplot()
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
    names = [r["block"] for r in result.rows]
    heights = [r["lr"] if r["lr"] is not None else would_be[r["block"]] for r in result.rows]
    colours = [_colour(r["state"]) for r in result.rows]
    drawn = bars.bar(names, heights, color=colours, edgecolor="black", linewidth=0.5)
    for bar, row in zip(drawn, result.rows):
        label = {"frozen": "frozen", "waits": row["unfreezes"].split(" (")[0]}.get(row["state"])
        if label:
            middle = (bar.get_x() + bar.get_width() / 2, bar.get_height() / 2)
            bars.annotate(label, middle, ha="center", va="center", fontsize=8, rotation=90)
    bars.set(ylabel="peak learning rate", title=f"{recipe.name or 'recipe'}: learning rate per block")
    bars.set_ylim(0, max(heights) * 1.25)
    bars.tick_params(axis="x", rotation=60, labelsize=8)
    bars.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    legend = {"trainable": "trainable", "waits": "unfreezes later", "partly frozen": "partly frozen"}
    legend["frozen"] = "frozen (would-be LR)"
    present = [s for s in legend if any(r["state"] == s for r in result.rows)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=_colour(s)) for s in present]
    bars.legend(handles, [legend[s] for s in present], fontsize=8, ncol=4, loc="upper center")
    steps = list(range(result.total_steps))
    lrs = lr_curve(recipe.schedule, result.total_steps, recipe.optimizer.lr, steps_per_epoch)
    curve.plot(steps, lrs, color="tab:blue")
    for row in result.rows:
        if row["state"] == "waits" and row["unfreezes"].startswith("step "):
            step = int(row["unfreezes"].split()[1])
            curve.axvline(step, color="tab:orange", linestyle="--", linewidth=0.8)
    title = "schedule" + (" (dashed: a block unfreezes)" if "waits" in states_of(result) else "")
    curve.set(xlabel="optimizer step", ylabel="head learning rate", title=title)
    curve.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    curve.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def states_of(result: Explanation) -> set[str]:
    return {r["state"] for r in result.rows}


def _colour(state: str) -> str:
    return {"trainable": "tab:blue", "waits": "tab:orange", "partly frozen": "lightsteelblue"}.get(
        state, "lightgrey"
    )
