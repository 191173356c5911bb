"""The LR range test: exact LR ramp and smoothing, restore, suggestions on a problem with a known
good range, layer-wise groups scaled together, and `finetune lr-find` end to end on a tiny model."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.recipe import load_recipe
from finetune.search.lr_find import exponential_lrs, range_test, suggest

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n=512, d=20, seed=0):
    """A noisy, linearly separable two-class problem."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    y = (x @ w + 0.5 * torch.randn(n, generator=g) > 0).long()
    return x, y


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))


def batches(x, y, seed, size=32):
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), size):
            yield x[order[i : i + size]], y[order[i : i + size]]


def final_loss(lr, x, y, steps=100):
    """Train a fresh MLP with AdamW at a fixed LR; full-data loss after `steps`."""
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    stream = batches(x, y, seed=1)
    for _ in range(steps):
        bx, by = next(stream)
        optimizer.zero_grad()
        F.cross_entropy(model(bx), by).backward()
        optimizer.step()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def test_lrs_grow_exponentially_from_min_to_max():
    lrs = exponential_lrs(1e-6, 1e-1, 6)
    assert lrs == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    with pytest.raises(FinetuneError, match="--min < --max"):
        exponential_lrs(1e-2, 1e-3, 10)
    with pytest.raises(FinetuneError, match="--steps"):
        exponential_lrs(1e-5, 1e-3, 1)


def test_loss_is_smoothed_by_a_bias_corrected_moving_average():
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    raw = iter([2.0, 4.0, 1.0, 3.0])

    def loss_of(_batch):  # a prescribed loss that still has a gradient
        return model.weight.sum() * 0 + next(raw)

    test = range_test(model, optimizer, iter(range(10)), loss_of, [1e-3, 1e-2, 1e-1, 1.0], beta=0.5)
    assert test.losses == [2.0, 4.0, 1.0, 3.0]
    expected, average = [], 0.0
    for step, loss in enumerate(test.losses):
        average = 0.5 * average + 0.5 * loss
        expected.append(average / (1 - 0.5 ** (step + 1)))
    assert test.smoothed == pytest.approx(expected)
    assert test.smoothed[0] == 2.0  # no pull towards 0 at the start


def test_weights_optimizer_state_and_rng_are_restored_exactly():
    x, y = blobs()
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _, (bx, by) in zip(range(3), batches(x, y, seed=0)):  # give the optimizer some state
        optimizer.zero_grad()
        F.cross_entropy(model(bx), by).backward()
        optimizer.step()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {id_: {k: v.clone() for k, v in s.items()} for id_, s in optimizer.state_dict()["state"].items()}
    model.eval()
    rng = torch.get_rng_state()

    test = range_test(
        model,
        optimizer,
        batches(x, y, seed=3),
        lambda b: F.cross_entropy(model(b[0]), b[1]),
        exponential_lrs(1e-5, 10.0, 40),
    )
    assert len(test.lrs) > 5  # it did train
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    restored = optimizer.state_dict()
    assert [g["lr"] for g in restored["param_groups"]] == [1e-3]
    for id_, saved in state.items():
        for key, value in saved.items():
            assert torch.equal(restored["state"][id_][key], value), (id_, key)
    assert not model.training  # the mode it was in
    assert torch.equal(torch.get_rng_state(), rng)


def test_suggestions_fall_inside_the_good_range_found_by_brute_force():
    x, y = blobs()
    grid = [10 ** (k / 4) for k in range(-20, 3)]  # 1e-5 .. ~3.2
    finals = {lr: final_loss(lr, x, y) for lr in grid}
    start = finals[grid[0]]
    good = [lr for lr, loss in finals.items() if loss < start / 5]  # 100 steps cut the loss 5-fold
    low, high = min(good), max(good)
    assert high / low >= 10  # a real range: 5.6e-3 .. 1e-1 on this problem

    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    test = range_test(
        model,
        optimizer,
        batches(x, y, seed=2),
        lambda b: F.cross_entropy(model(b[0]), b[1]),
        exponential_lrs(1e-6, 10.0, 100),
    )
    assert "above 4 x its minimum" in test.stop_reason and len(test.lrs) < 100
    for name in ("steepest", "min/10"):
        assert low <= test.suggestions[name] <= high, (name, test.suggestions[name], low, high)


def test_suggest_reads_the_curve():
    lrs = exponential_lrs(1e-5, 1e0, 21)  # 4 points per decade
    curve = [1.0] * 8 + [0.95, 0.8, 0.5, 0.3, 0.25, 0.2, 0.22, 0.4, 1.0, 2.0, 4.0, 8.0, 16.0]
    found = suggest(lrs, curve)
    assert found["steepest"] == pytest.approx(lrs[10])  # the largest drop: 0.8 -> 0.5 -> 0.3
    assert found["min/10"] == pytest.approx(lrs[13] / 10)
    assert suggest(lrs[:2], curve[:2]) == {"steepest": None, "min/10": None}
    rising = [1.0 + i for i in range(21)]  # minimum at the first step: no descent to speak of
    assert suggest(lrs, rising) == {"steepest": None, "min/10": pytest.approx(lrs[0] / 10)}


def test_layerwise_groups_are_scaled_together_keeping_their_ratio():
    x, y = blobs()
    model = mlp()
    optimizer = torch.optim.AdamW(
        [{"params": model[0].parameters(), "lr": 1e-4}, {"params": model[2].parameters(), "lr": 1e-3}]
    )
    used = []

    def loss_of(batch):
        used.append([g["lr"] for g in optimizer.param_groups])
        return F.cross_entropy(model(batch[0]), batch[1])

    lrs = exponential_lrs(1e-6, 1e-2, 20)
    test = range_test(model, optimizer, batches(x, y, 0), loss_of, lrs, reference_lr=1e-3)
    assert test.lrs == lrs
    for lr, (bottom, top) in zip(lrs, used):
        assert top == pytest.approx(lr)  # the reference group follows the test's LR
        assert bottom == pytest.approx(lr / 10)  # the other keeps its 1:10 ratio
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]


def test_gradient_accumulation_takes_several_batches_per_step():
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def loss_of(batch):
        seen.append(batch)
        return model.weight.sum() * 0 + float(batch)

    test = range_test(model, optimizer, iter(range(100)), loss_of, [1e-3, 1e-2, 1e-1], accumulation=4)
    assert seen == list(range(12))
    assert test.losses == [1.5, 5.5, 9.5]  # the mean over each step's 4 batches


def test_non_finite_loss_stops_the_test():
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    values = iter([1.0, 0.9, float("nan"), 0.5])

    def loss_of(_batch):
        return model.weight.sum() * 0 + next(values)

    test = range_test(model, optimizer, iter(range(10)), loss_of, exponential_lrs(1e-4, 1e-1, 4))
    assert len(test.lrs) == 3 and "not finite" in test.stop_reason
    assert not math.isfinite(test.smoothed[-1])


def test_lr_find_command_on_a_tiny_model(tiny_recipe, tmp_path, capsys):
    import yaml

    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(yaml.safe_dump(tiny_recipe))
    out, written = tmp_path / "lr-find", tmp_path / "tuned.yaml"
    args = ["lr-find", str(recipe_path), "training.batch_size=4", "--steps", "12", "--min", "1e-5"]
    args += ["--max", "1.0", "--output", str(out), "--write", str(written)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "steepest descent" in printed and "min loss / 10" in printed
    assert (out / "lr_find.png").stat().st_size > 10_000
    rows = list(csv.DictReader((out / "lr_find.csv").open()))
    assert 3 <= len(rows) <= 12
    assert float(rows[0]["lr"]) == pytest.approx(1e-5)
    assert [r["step"] for r in rows] == [str(i) for i in range(len(rows))]

    tuned = load_recipe(written)
    original = load_recipe(recipe_path, ["training.batch_size=4"])
    suggested = float(printed.split("min loss / 10:")[1].split("lr")[1].split()[0])
    assert tuned.optimizer.lr == pytest.approx(suggested, rel=1e-2)
    expected = original.to_yaml_dict()  # the same recipe, but for the LR and the fixed run folder
    expected["optimizer"]["lr"] = tuned.optimizer.lr
    expected["output"]["dir"] = None
    assert tuned.to_yaml_dict() == expected

    # never overwrites: neither the output folder nor the written recipe
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    # a recipe refused before the test starts leaves no folder behind
    refused = tmp_path / "refused"
    assert main(["lr-find", str(recipe_path), "data.train=missing.csv", "--output", str(refused)]) == 2
    assert "data.train: file not found" in capsys.readouterr().err
    assert not refused.exists()


def test_written_recipe_scales_explicit_layer_lrs_with_the_suggestion(tmp_path):
    from finetune.recipe import validate_recipe
    from finetune.search.lr_find import write_recipe_with_lr

    lrs = {"embeddings": 1e-5, "0-1": 1.5e-5, -1: 3e-5, "head": 1e-4}
    recipe = validate_recipe({"optimizer": {"lr": 2e-5}, "layer_lr": {"decay": 0.9, "lrs": lrs}})
    path = write_recipe_with_lr(recipe, 5e-5, tmp_path / "tuned.yaml", "the test's suggestion")
    tuned = load_recipe(path)
    assert tuned.optimizer.lr == pytest.approx(5e-5)
    # the range test moved every group by 5e-5 / 2e-5 = 2.5: the recipe keeps what it tested
    scaled = {"embeddings": 2.5e-5, "0-1": 3.75e-5, "-1": 7.5e-5, "head": 2.5e-4}  # keys written as text
    assert tuned.layer_lr.lrs == pytest.approx(scaled)
    assert tuned.layer_lr.decay == 0.9  # a ratio, not an LR: unchanged
    assert "layer_lr.lrs scaled with it (x 2.5)" in path.read_text().splitlines()[0]


def test_restore_and_layerwise_groups_with_the_recipe_trainer_on_a_tiny_bert(tiny_recipe, tmp_path):
    """The trainer's own (fused AdamW) optimizer with per-block LRs, loss and data loader."""
    from finetune.recipe import validate_recipe
    from finetune.search.lr_find import cycle, trainer_loss
    from finetune.training.run import prepare

    tiny_recipe["layer_lr"] = {"decay": 0.5}  # head at optimizer.lr, layer i of 4 at lr x 0.5^(4-i)
    recipe = validate_recipe(tiny_recipe)
    run = prepare(recipe, tmp_path / "t")
    model, trainer = run.model, run.trainer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = trainer.create_optimizer()
    peaks = [g["lr"] for g in optimizer.param_groups]
    assert len(set(peaks)) >= 5  # embeddings, 4 layers, head: a group (pair) per block
    loss_of, used = trainer_loss(trainer), []

    def recording(batch):
        used.append([g["lr"] for g in optimizer.param_groups])
        return loss_of(batch)

    lrs = exponential_lrs(1e-4, 1.0, 8)
    test = range_test(
        trainer.model,
        optimizer,
        cycle(trainer.get_train_dataloader()),
        recording,
        lrs,
        reference_lr=recipe.optimizer.lr,
        clip_grad_norm=1.0,
    )
    assert len(test.lrs) >= 3 and test.losses[0] == pytest.approx(math.log(2), abs=0.1)
    for lr, group_lrs in zip(test.lrs, used):  # every block scaled by the same factor
        assert group_lrs == pytest.approx([peak * lr / recipe.optimizer.lr for peak in peaks])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert optimizer.state_dict()["state"] == {}  # as fresh as it was
    assert [g["lr"] for g in optimizer.param_groups] == peaks


@pytest.mark.integration
def test_lr_find_on_minilm_and_the_demo_set(tmp_path):
    from finetune.search.lr_find import find_lr

    recipe = load_recipe("demo", ["training.batch_size=8"])
    test, folder = find_lr(recipe, output=tmp_path / "lr", start_lr=1e-6, end_lr=1e-1, steps=10)
    assert (folder / "lr_find.png").is_file() and (folder / "lr_find.csv").is_file()
    assert test.losses[0] == pytest.approx(math.log(2), abs=0.15)  # a fresh two-class head
    assert 1e-7 <= test.suggestions["min/10"] <= 1e-2
