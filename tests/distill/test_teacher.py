"""`distill:`: the teacher found and checked, its outputs computed once and found again for every
batch in any order, and runs that distil (with freezing and LoRA too)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import sentiment_rows, write_rows

from finetune.data.samplers import LengthGroupedSampler
from finetune.data.task_data import tokenize
from finetune.distill import teacher as teacher_module
from finetune.distill.teacher import (
    TeacherLogits,
    compute_teacher_logits,
    dataset_keys,
    teacher_config,
    teacher_source,
)
from finetune.errors import FinetuneError, RecipeError
from finetune.recipe import load_recipe, validate_recipe
from finetune.recipe.distill import DistillSection
from finetune.training.preflight import recipe_problems
from finetune.training.run import train


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A trained tiny teacher: a finetune run folder with labels neg, pos."""
    folder = tmp_path_factory.mktemp("teacher")
    recipe = {
        "name": "teacher",
        "model": {"name": str(tiny_model_dir)},
        "data": {
            "train": str(write_rows(folder / "train.csv", sentiment_rows(4))),
            "validation": str(write_rows(folder / "dev.csv", sentiment_rows(1))),
            "max_length": 16,
        },
        "optimizer": {"lr": 1e-3},
        "training": {"epochs": 2, "batch_size": 8, "seed": 0},
        "calibration": {"temperature": False},
        "output": {"dir": str(folder / "run"), "plots": False},
    }
    return train(validate_recipe(recipe)).run_dir


def student_recipe(tiny_recipe, teacher, **distill):
    recipe = dict(tiny_recipe, distill={"teacher": str(teacher), **distill})
    recipe["training"] = dict(recipe["training"], epochs=3)
    return recipe


def logged(run_dir: Path, key: str) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line[key] for line in lines if key in line]


def count_teacher_rows(monkeypatch) -> list[int]:
    """Spy on the teacher: the number of examples each of its forward passes gets."""
    rows: list[int] = []
    load = teacher_module.load_teacher

    def counted(source, task):
        model, tokenizer = load(source, task)
        model.register_forward_hook(
            lambda module, args, kwargs, out: rows.append(len(kwargs["input_ids"])), with_kwargs=True
        )
        return model, tokenizer

    monkeypatch.setattr(teacher_module, "load_teacher", counted)
    return rows


def test_a_distilled_run_logs_the_term_records_the_teacher_and_runs_the_teacher_once_per_example(
    tiny_recipe, teacher_run, monkeypatch, one_thread
):
    rows = count_teacher_rows(monkeypatch)
    result = train(validate_recipe(student_recipe(tiny_recipe, teacher_run, alpha=0.7, temperature=3)))
    assert sum(rows) == result.results["data"]["train"] == 48  # 3 epochs, each example once
    distilled = logged(result.run_dir, "loss_distill")
    assert len(distilled) == result.results["steps"] and all(value > 0 for value in distilled)
    recorded = result.results["distill"]
    assert recorded["teacher"] == str(teacher_run) and recorded["model_dir"] == str(teacher_run / "model")
    assert (recorded["alpha"], recorded["temperature"], recorded["examples"]) == (0.7, 3.0, 48)


def sharpened(teacher_run: Path, folder: Path) -> Path:
    """The teacher with its head's weights x50: outputs far apart (the tiny run learns little)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(teacher_run / "model")
    with torch.no_grad():
        model.classifier.weight.mul_(50)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(teacher_run / "model").save_pretrained(folder)
    return folder


def test_a_student_that_is_its_teacher_starts_with_a_zero_distillation_term(
    tiny_recipe, teacher_run, tmp_path, one_thread
):
    """The student loads the teacher's weights (head included), without dropout, in fp32: its first
    batch's outputs are the teacher's, whatever batch the sampler draws first."""
    teacher = sharpened(teacher_run, tmp_path / "sharp")
    recipe = student_recipe(tiny_recipe, teacher, alpha=1.0)
    recipe["model"] = {"name": str(teacher)}
    recipe["regularization"] = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "classifier_dropout": 0.0}
    recipe["training"].update(precision="fp32", max_steps=2, group_by_length=True)
    recipe["schedule"] = {"warmup_ratio": 0.0}  # the first step moves the weights
    recipe["optimizer"] = {"lr": 1e-2}
    recipe["output"] = {"dir": tiny_recipe["output"]["dir"], "save_model": False, "plots": False}
    result = train(validate_recipe(recipe))
    first, second = logged(result.run_dir, "loss_distill")[:2]
    assert first < 1e-6  # the teacher ran on other batches (other padding): float noise only
    assert second > 1e-4  # one step later the student has moved


def test_outputs_are_found_by_token_ids_in_any_batch_order(teacher_run, one_thread):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    model = AutoModelForSequenceClassification.from_pretrained(teacher_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_run / "model")
    texts = Dataset.from_dict(
        {"text": [row["text"] + " " * i + "!" * (i % 5) for i, row in enumerate(sentiment_rows(2))]}
    )
    train_set = tokenize(texts, tokenizer, 16)
    logits = compute_teacher_logits(model, tokenizer, train_set, 5, torch.device("cpu"))
    cache = TeacherLogits(dataset_keys(train_set), logits, {})
    collate = DataCollatorWithPadding(tokenizer)
    sampler = LengthGroupedSampler(list(train_set["length"]), 4, seed=3)
    order = list(sampler)
    assert order != sorted(order)
    rows = train_set.select_columns(["input_ids", "attention_mask", "token_type_ids"])
    for start in range(0, len(order), 4):
        batch = collate(rows.select(order[start : start + 4]).to_list())
        with torch.no_grad():
            direct = model(**batch).logits
        torch.testing.assert_close(cache.lookup(batch), direct, atol=1e-5, rtol=1e-5)
    unseen = collate([tokenizer("a text the teacher never saw")])
    with pytest.raises(RuntimeError, match="1 of 1 examples of a training batch have no teacher output"):
        cache.lookup(unseen)


def relabelled(teacher_run: Path, folder: Path, **config) -> Path:
    """A copy of the teacher's model folder with config keys changed."""
    shutil.copytree(teacher_run / "model", folder)
    settings = json.loads((folder / "config.json").read_text())
    settings.update(config)
    (folder / "config.json").write_text(json.dumps(settings))
    return folder


def test_a_teacher_with_other_labels_is_an_error_naming_both(tiny_recipe, teacher_run, tmp_path):
    swapped = relabelled(
        teacher_run, tmp_path / "swapped", id2label={"0": "pos", "1": "neg"}, label2id={"pos": 0, "neg": 1}
    )
    with pytest.raises(
        FinetuneError, match=r"predicts the labels \['pos', 'neg'\], the student's data has \['neg', 'pos'\]"
    ):
        train(validate_recipe(student_recipe(tiny_recipe, swapped)))
    regression = relabelled(teacher_run, tmp_path / "regression", problem_type="regression")
    with pytest.raises(
        FinetuneError, match="was trained for regression, the student for single_label_classification"
    ):
        train(validate_recipe(student_recipe(tiny_recipe, regression)))


def test_a_teacher_with_another_tokenizer_is_an_error_unless_it_reads_with_its_own(
    tiny_recipe, teacher_run, tmp_path, one_thread
):
    from transformers import AutoTokenizer

    cased = relabelled(teacher_run, tmp_path / "cased")
    AutoTokenizer.from_pretrained(cased, do_lower_case=False).save_pretrained(cased)  # "I" becomes [UNK]
    with pytest.raises(
        FinetuneError,
        match=rf"distill.tokenizer: the teacher {cased} splits texts into other token ids than the student .*distill.tokenizer: own",
    ):
        train(validate_recipe(student_recipe(tiny_recipe, cased)))
    recipe = student_recipe(tiny_recipe, cased, tokenizer="own")
    recipe["training"].update(max_steps=2)
    recipe["output"] = dict(tiny_recipe["output"], save_model=False, plots=False)
    assert train(validate_recipe(recipe)).results["distill"]["tokenizer"] == "own"


def test_a_missing_teacher_is_a_clear_error_in_validate_and_train(tiny_recipe, tmp_path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(
        FinetuneError, match=f"distill.teacher: folder {missing} does not exist; train the teacher first"
    ):
        teacher_config(DistillSection(teacher=str(missing)))
    # a name like runs/x reads as a hub id when there is no such folder: offline, it cannot load
    with pytest.raises(
        FinetuneError,
        match="distill.teacher: 'runs/my-teacher' is not a run folder, a model folder, or a hub model",
    ):
        teacher_config(DistillSection(teacher="runs/my-teacher"))
    problems = recipe_problems(validate_recipe(student_recipe(tiny_recipe, missing)))
    assert any(problem.startswith("distill.teacher: folder") for problem in problems)
    run = tmp_path / "unsaved"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: x\n")
    with pytest.raises(FinetuneError, match="saved no model"):
        teacher_source(DistillSection(teacher=str(run)))


def test_the_shipped_recipe_asks_for_a_teacher_and_validate_says_so():
    recipe = load_recipe(
        "distill", ["data.dir=builtin:demo", "data.train=train.csv", "data.validation=dev.csv"]
    )
    assert recipe.distill.enabled and recipe.distill.alpha == 0.5 and recipe.distill.temperature == 2.0
    assert any(
        "distill.teacher" in problem and "train the teacher first" in problem
        for problem in recipe_problems(recipe)
    )


def test_the_recipe_refuses_what_distillation_cannot_do():
    with pytest.raises(RecipeError, match="not token_classification"):
        validate_recipe({"model": {"task": "token_classification"}, "distill": {"teacher": "t"}})
    with pytest.raises(RecipeError, match="word_deletion/word_swap change the texts every epoch"):
        validate_recipe({"regularization": {"word_swap": 0.1}, "distill": {"teacher": "t"}})
    with pytest.raises(RecipeError, match="cuts other windows than the student's"):
        validate_recipe({"data": {"long_documents": True}, "distill": {"teacher": "t", "tokenizer": "own"}})
    with pytest.raises(RecipeError, match="distill.alpha"):
        validate_recipe({"distill": {"teacher": "t", "alpha": 1.5}})
    assert not validate_recipe({}).distill.enabled


@pytest.mark.parametrize(
    "section",
    [
        {"freeze": {"embeddings": True, "layers": [0, 1]}},
        {"peft": {"method": "lora", "r": 4, "alpha": 8}},
    ],
    ids=["freeze", "lora"],
)
def test_distillation_trains_with_freezing_and_with_lora_on_the_student(
    section, tiny_recipe, teacher_run, one_thread
):
    recipe = {**student_recipe(tiny_recipe, teacher_run), **section}
    recipe["training"].update(max_steps=3)
    recipe["output"] = dict(tiny_recipe["output"], plots=False)
    result = train(validate_recipe(recipe))
    assert len(logged(result.run_dir, "loss_distill")) == 3
    assert result.results["distill"]["examples"] == 48
    if "freeze" in section:
        assert result.results["frozen_blocks"][:3] == ["embeddings", "layer.0", "layer.1"]
    else:
        assert result.results["trainable_parameters"] < result.results["total_parameters"] / 10


TASK_ROWS = {
    "regression": [
        {"text": t, "label": 4.5 - i / 3}
        for i, t in enumerate(["great film", "a delight", "fine", "dull", "awful film"] * 4)
    ],
    "multi_label": [
        {"text": "the striker scored", "label": "sports"},
        {"text": "the minister spoke", "label": "politics,sports"},
    ]
    * 8,
}


@pytest.mark.parametrize("task", sorted(TASK_ROWS))
def test_regression_and_multi_label_students_learn_from_a_teacher_of_their_task(
    task, tiny_recipe, tmp_path, one_thread
):
    train_file = write_rows(tmp_path / "train.csv", TASK_ROWS[task])
    tiny_recipe["model"]["task"] = task
    tiny_recipe["data"].update(train=str(train_file), validation=str(train_file))
    tiny_recipe["training"].update(max_steps=2)
    tiny_recipe["output"].update(plots=False, dir=str(tmp_path / "teacher"))
    teacher = train(validate_recipe(tiny_recipe)).run_dir
    tiny_recipe["output"].update(dir=str(tmp_path / "student"), save_model=False)
    result = train(validate_recipe({**tiny_recipe, "distill": {"teacher": str(teacher)}}))
    assert len(logged(result.run_dir, "loss_distill")) == 2
    assert result.results["distill"]["examples"] == len(TASK_ROWS[task])
    other = "classification" if task == "regression" else "regression"
    tiny_recipe["model"]["task"] = other  # a teacher of another task is refused
    rows = sentiment_rows(2) if other == "classification" else TASK_ROWS["regression"]
    other_file = write_rows(tmp_path / "other.csv", rows)
    tiny_recipe["data"].update(train=str(other_file), validation=str(other_file))
    tiny_recipe["output"].update(dir=str(tmp_path / "refused"))
    with pytest.raises(FinetuneError, match=f"distill.teacher: {teacher} was trained for "):
        train(validate_recipe({**tiny_recipe, "distill": {"teacher": str(teacher)}}))


def test_a_teacher_saved_as_an_adapter_is_loaded_on_its_base_model(tiny_recipe, tmp_path, one_thread):
    tiny_recipe["peft"] = {"method": "lora", "r": 4, "alpha": 8, "save": "adapter"}
    tiny_recipe["training"].update(max_steps=2)
    tiny_recipe["output"].update(plots=False, dir=str(tmp_path / "teacher"))
    teacher = train(validate_recipe(tiny_recipe)).run_dir
    assert (teacher / "model" / "adapter_config.json").is_file()
    del tiny_recipe["peft"]
    tiny_recipe["output"].update(dir=str(tmp_path / "student"), save_model=False)
    result = train(validate_recipe({**tiny_recipe, "distill": {"teacher": str(teacher)}}))
    assert result.results["distill"]["examples"] == 48
    assert len(logged(result.run_dir, "loss_distill")) == 2


def test_long_documents_distil_window_by_window(tiny_recipe, teacher_run, one_thread):
    recipe = student_recipe(tiny_recipe, teacher_run)
    rows = [dict(row, text=" ".join([row["text"]] * 4)) for row in sentiment_rows(2)]  # 8+ tokens each
    long_file = write_rows(Path(tiny_recipe["output"]["dir"]).parent / "long.csv", rows)
    recipe["data"].update(train=str(long_file), max_length=8, long_documents={"stride": 2})
    recipe["training"].update(max_steps=2)
    recipe["output"] = dict(tiny_recipe["output"], save_model=False, plots=False)
    result = train(validate_recipe(recipe))
    assert result.results["distill"]["examples"] > len(rows)  # one teacher output per window
    assert len(logged(result.run_dir, "loss_distill")) == 2
