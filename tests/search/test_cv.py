"""Cross-validation: folds partition the data and keep the label mix; one run per fold and seed;
selection on an inner split, one score on the held-out fold; mean and spread; every fold run is an
ordinary, reproducible run folder."""

import collections
import csv
import json
import statistics

import pytest
from conftest import GLUE, needs_glue
from transformers import TrainerCallback

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.recipe import load_recipe, validate_recipe
from finetune.search.cv import cross_validate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def short_recipe(tiny_recipe):
    tiny_recipe["training"].update({"max_steps": 2})
    tiny_recipe["evaluation"].update({"every": 1, "before_training": False})
    tiny_recipe["output"].update({"save_model": False, "plots": False, "dir": None})
    return validate_recipe(tiny_recipe)


def test_cross_validation_on_a_tiny_model(short_recipe, tmp_path):
    folder = tmp_path / "cv"
    summary, written = cross_validate(short_recipe, folds=3, seeds=[0, 1], output=folder)
    assert written == folder and len(summary.runs) == 6
    assert [(r.seed, r.fold) for r in summary.runs] == [(s, f) for s in (0, 1) for f in (1, 2, 3)]

    for run in summary.runs:  # ordinary run folders, on the fold files, reproducible from their recipe
        recipe = load_recipe(run.run_dir / "recipe.yaml")
        assert recipe.training.seed == run.seed
        assert recipe.data.validation is None  # the run validates on a share of its training folds
        results = json.loads((run.run_dir / "results.json").read_text())
        # 48 rows: 32 in 2 of 3 folds, of which 10% (4, stratified) validate; 16 held out
        assert results["data"]["train"] == run.train_size == 28
        assert results["data"]["validation"] == run.inner_size == 4
        assert results["best"]["value"] == run.inner_value
        assert results["heldout"]["examples"] == run.heldout_size == 16
        assert results["heldout"]["metrics"]["accuracy"] == run.value
        heldout = folder / "data" / f"seed{run.seed}" / f"fold{run.fold}" / "heldout.jsonl"
        assert results["heldout"]["file"] == str(heldout)
        held = [json.loads(line) for line in heldout.read_text().splitlines()]
        assert sorted(r["label"] for r in held) == ["neg"] * 8 + ["pos"] * 8  # stratified: 50/50 as in train

    for seed in (0, 1):  # per seed, the validation folds partition the training data
        texts = []
        for fold in (1, 2, 3):
            path = folder / "data" / f"seed{seed}" / f"fold{fold}" / "heldout.jsonl"
            texts += [json.loads(line)["text"] for line in path.open()]
        assert len(texts) == 48

    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert len(rows) == 6 and rows[0].keys() >= {"seed", "fold", "accuracy", "inner_accuracy", "run_dir"}
    assert [float(r["accuracy"]) for r in rows] == [r.value for r in summary.runs]
    stats = json.loads((folder / "summary.json").read_text())
    values = [r.value for r in summary.runs]
    assert stats["overall"]["n"] == 6 and stats["scored_on"].startswith("held-out fold")
    assert stats["overall"]["mean"] == pytest.approx(statistics.fmean(values))  # the headline: held-out
    assert stats["overall"]["std"] == pytest.approx(statistics.stdev(values))
    assert stats["inner_validation"]["mean"] == pytest.approx(
        statistics.fmean(r.inner_value for r in summary.runs)
    )
    assert (folder / "cv.png").stat().st_size > 10_000
    assert (
        "+-" in (folder / "results.md").read_text()
        and "inner validation" in (folder / "results.md").read_text()
    )

    with pytest.raises(FinetuneError, match="already exists"):
        cross_validate(short_recipe, folds=3, output=folder)


def test_seed_repeats_without_folds_on_the_command_line(short_recipe, tmp_path, capsys):
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(short_recipe.to_yaml_dict()))
    folder = tmp_path / "seeds"
    assert (
        main(
            [
                "cv",
                str(path),
                "training.max_steps=1",
                "--folds",
                "1",
                "--repeats",
                "2",
                "--output",
                str(folder),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "accuracy:" in out and "over 2 runs" in out
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert [(r["seed"], r["fold"]) for r in rows] == [("0", "0"), ("1", "0")]
    for row in rows:  # the recipe's own split: 48 training and 12 validation rows
        results = json.loads((folder / row["run_dir"] / "results.json").read_text())
        assert (results["data"]["train"], results["data"]["validation"], results["steps"]) == (48, 12, 1)
    refused = tmp_path / "refused"
    args = [
        "cv",
        str(path),
        "model.task=regression",
        "early_stopping.metric=pearson",
        "--output",
        str(refused),
    ]
    assert main(args) == 2  # string labels are no regression targets: said before any folder is made
    assert "not a number" in capsys.readouterr().err
    assert not refused.exists()


@pytest.mark.integration
@needs_glue
def test_cv_on_mrpc_sentence_pairs(tmp_path):
    recipe = load_recipe(
        "glue-mrpc",
        [
            f"data.dir={GLUE}",
            "data.max_train_samples=40",
            "data.max_length=48",
            "training.max_steps=2",
            "training.batch_size=8",
            "evaluation.every=2",
            "evaluation.before_training=false",
            "output.save_model=false",
            "output.plots=false",
        ],
    )
    summary, folder = cross_validate(recipe, folds=2, output=tmp_path / "cv")
    assert [r.fold for r in summary.runs] == [1, 2]
    assert sum(r.heldout_size for r in summary.runs) == 40
    lines = (folder / "data" / "seed42" / "fold1" / "heldout.jsonl").read_text().splitlines()
    heldout = [json.loads(line) for line in lines]
    assert all(set(row) == {"text", "text_pair", "label"} for row in heldout)  # sentence pairs
    # numeric labels (strings would not count as 0 and 1); the 40 training rows hold 12 negatives and
    # 28 positives, which stratified folds halve (an unstratified split with this seed happens to as well)
    assert collections.Counter(row["label"] for row in heldout) == {0: 6, 1: 14}
    run = load_recipe(summary.runs[0].run_dir / "recipe.yaml")
    assert (run.data.text, run.data.text_pair, run.data.label) == ("text", "text_pair", "label")
    assert all(r.value is not None for r in summary.runs)


class Recorder(TrainerCallback):
    """The texts of every evaluation (early stopping's input) and every prediction of a run."""

    def __init__(self):
        self.evaluated, self.predicted = [], []

    @staticmethod
    def texts(loader, tokenizer):
        return sorted(tokenizer.decode(ids, skip_special_tokens=True) for ids in loader.dataset["input_ids"])

    def on_evaluate(self, args, state, control, eval_dataloader=None, processing_class=None, **kwargs):
        self.evaluated.append(self.texts(eval_dataloader, processing_class))

    def on_predict(
        self, args, state, control, metrics, eval_dataloader=None, processing_class=None, **kwargs
    ):
        self.predicted.append((self.texts(eval_dataloader, processing_class), metrics))


def test_selection_never_sees_the_held_out_fold(short_recipe, tmp_path, monkeypatch):
    """Early stopping and the best weights see only the inner split; the held-out fold is scored
    once, after training, and that score (of the restored best weights) is what cv reports."""
    import torch
    from conftest import NEGATIVE, POSITIVE, write_rows

    import finetune.training.run

    rows = [{"text": f"{t} {i}".lower(), "label": "pos"} for i, t in enumerate(POSITIVE * 3)]
    rows += [{"text": f"{t} {i}".lower(), "label": "neg"} for i, t in enumerate(NEGATIVE * 3)]
    train_file = write_rows(tmp_path / "unique.csv", rows)  # 36 distinct texts: rows can be told apart
    data = short_recipe.to_yaml_dict()
    data["data"]["train"] = str(train_file)
    data["evaluation"]["before_training"] = True  # the baseline evaluation too
    recipe = validate_recipe(data)

    runs, real_train = [], finetune.training.run.train

    def recording_train(run_recipe, source=None, callbacks=None):
        recorder = Recorder()
        result = real_train(run_recipe, source=source, callbacks=[*(callbacks or []), recorder])
        runs.append((recorder, result.trainer.model, result.trainer.processing_class))
        return result

    monkeypatch.setattr(finetune.training.run, "train", recording_train)
    summary, folder = cross_validate(recipe, folds=3, seeds=[0], output=tmp_path / "cv")

    for run, (recorder, model, tokenizer) in zip(summary.runs, runs):
        where = folder / "data" / "seed0" / f"fold{run.fold}"
        held = sorted(json.loads(line)["text"] for line in (where / "heldout.jsonl").open())
        train_texts = {json.loads(line)["text"] for line in (where / "train.jsonl").open()}
        # before, during (2 steps) and after training: always the same inner split of the training folds
        assert len(recorder.evaluated) == 4
        inner = recorder.evaluated[0]
        assert all(texts == inner for texts in recorder.evaluated)
        assert len(inner) == run.inner_size == 3 and set(inner) <= train_texts and not set(inner) & set(held)
        # the held-out fold: scored exactly once, and that is the reported value
        assert len(recorder.predicted) == 1
        predicted, metrics = recorder.predicted[0]
        assert predicted == held and run.heldout_size == 12
        assert run.value == metrics["heldout_accuracy"]

        # the same number, by hand, from the weights the run ended with (the restored best ones)
        names = json.loads((run.run_dir / "results.json").read_text())["labels"]
        gold = [json.loads(line) for line in (where / "heldout.jsonl").open()]
        model.eval()
        with torch.no_grad():
            batch = tokenizer([g["text"] for g in gold], padding=True, truncation=True, max_length=16)
            logits = model(**{k: torch.tensor(v) for k, v in batch.items()}).logits
        hits = [names[i] == g["label"] for i, g in zip(logits.argmax(-1).tolist(), gold)]
        assert run.value == pytest.approx(sum(hits) / len(hits))
