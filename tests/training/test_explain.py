"""`finetune explain`: the table rows, totals, schedule and plot for frozen, gradual and LLRD recipes."""

import pytest

from finetune.cli import main
from finetune.recipe import load_recipe
from finetune.training.explain import explain

PNG = b"\x89PNG\r\n\x1a\n"


def shipped(name, tiny_model_dir, *overrides):
    return load_recipe(name, [f"model.name={tiny_model_dir}", *overrides])


def rows_by_block(result):
    return {row["block"]: row for row in result.rows}


def test_frozen_recipe_rows_totals_and_plot_without_reading_data(tiny_model_dir, tmp_path):
    # a data file that does not exist: with --num-labels explain must not try to read it
    recipe = shipped("freeze-bottom-half", tiny_model_dir, "data.train=missing.csv", "optimizer.lr=2e-5")
    result = explain(recipe, num_labels=2, steps=100, plot=tmp_path / "explain.png", show_recipe=False)
    rows = rows_by_block(result)
    assert list(rows) == ["embeddings", "layer.0", "layer.1", "layer.2", "layer.3", "pooler", "head"]
    for block in ("embeddings", "layer.0", "layer.1"):
        assert rows[block]["state"] == "frozen" and rows[block]["trainable"] == 0
        assert rows[block]["lr"] is None and rows[block]["unfreezes"] == "never"
    for block in ("layer.2", "layer.3", "pooler", "head"):
        row = rows[block]
        assert row["state"] == "trainable" and row["trainable"] == row["parameters"] > 0
        assert row["lr"] == 2e-5 and row["weight_decay"] == [0.01, 0.0] and row["unfreezes"] == "start"
        assert row["mode"] == "train"  # eval_mode is off by default
    trainable = sum(rows[b]["parameters"] for b in ("layer.2", "layer.3", "pooler", "head"))
    totals = result.totals
    assert totals["trainable"] == totals["trainable_at_start"] == trainable
    assert totals["parameters"] == sum(r["parameters"] for r in result.rows)
    assert totals["optimizer_state_bytes"] == 2 * 4 * trainable  # AdamW: two fp32 moments
    assert result.total_steps == 100 and result.steps_source == "--steps"
    assert (tmp_path / "explain.png").read_bytes().startswith(PNG) and result.plot == tmp_path / "explain.png"


def test_gradual_recipe_unfreezing_steps_come_from_the_data_size(tiny_model_dir, tiny_recipe, tmp_path):
    data = tiny_recipe["data"]
    recipe = shipped(
        "gradual-unfreeze",
        tiny_model_dir,
        f"data.train={data['train']}",
        f"data.validation={data['validation']}",
        "training.epochs=2",
        "training.batch_size=8",
        "freeze.eval_mode=true",
        "optimizer.lr=2e-5",
    )
    result = explain(recipe, plot=tmp_path / "gradual.png", show_recipe=False)
    assert result.total_steps == 12  # 48 training examples, batch 8, 2 epochs
    assert "48 training examples" in result.steps_source
    rows = rows_by_block(result)
    assert rows["embeddings"]["state"] == "frozen" and rows["embeddings"]["unfreezes"] == "never"
    # every 0.5 epoch = 3 steps, top-down
    assert rows["layer.3"]["unfreezes"] == "step 3 (epoch 0.5)"
    assert rows["layer.2"]["unfreezes"] == "step 6 (epoch 1)"
    assert rows["layer.1"]["unfreezes"] == "step 9 (epoch 1.5)"
    assert rows["layer.0"]["unfreezes"] == "step 12 (epoch 2) (after the run)"
    for block in ("layer.0", "layer.1", "layer.2", "layer.3"):
        assert rows[block]["state"] == "waits" and rows[block]["lr"] == 2e-5  # a group from the start
        assert rows[block]["mode"] == "eval"  # frozen until its turn, and eval_mode is on
        assert rows[block]["trainable"] == rows[block]["parameters"]
    assert rows["embeddings"]["mode"] == "eval" and rows["head"]["mode"] == "train"
    assert rows["head"]["unfreezes"] == rows["pooler"]["unfreezes"] == "start"
    totals = result.totals
    assert totals["trainable_at_start"] == rows["pooler"]["parameters"] + rows["head"]["parameters"]
    assert totals["trainable"] == totals["trainable_at_start"] + sum(
        rows[f"layer.{i}"]["parameters"] for i in range(4)
    )
    assert (tmp_path / "gradual.png").read_bytes().startswith(PNG)


def test_llrd_recipe_lrs_per_block_and_schedule_points(tiny_model_dir, tmp_path):
    recipe = shipped("llrd", tiny_model_dir, "layer_lr.decay=0.5", "optimizer.lr=5e-5")
    result = explain(recipe, num_labels=2, steps=200, plot=tmp_path / "llrd.png", show_recipe=False)
    lrs = {row["block"]: row["lr"] for row in result.rows}
    assert lrs == pytest.approx(
        {
            "embeddings": 5e-5 * 0.5**5,
            "layer.0": 5e-5 * 0.5**4,
            "layer.1": 5e-5 * 0.5**3,
            "layer.2": 5e-5 * 0.5**2,
            "layer.3": 5e-5 * 0.5,
            "pooler": 5e-5,
            "head": 5e-5,
        }
    )
    points = {p["at"]: (p["step"], p["lr"]) for p in result.schedule}
    assert points["first step"] == (0, 0.0)
    assert points["warmup end"] == (20, pytest.approx(5e-5))  # 10% of 200 steps
    assert points["50% of steps"] == (100, pytest.approx(5e-5 * 100 / 180))
    assert points["last step"][0] == 199
    assert (tmp_path / "llrd.png").read_bytes().startswith(PNG)


def test_layernorm_only_recipe_is_partly_frozen_with_no_decay(tiny_model_dir, tmp_path):
    recipe = shipped("layernorm-only", tiny_model_dir)
    result = explain(recipe, num_labels=2, steps=50, plot=None, show_recipe=False)
    rows = rows_by_block(result)
    assert rows["layer.0"]["state"] == "partly frozen" and rows["layer.0"]["weight_decay"] == [0.0]
    assert rows["layer.0"]["trainable"] == 2 * 2 * 32  # two LayerNorms, weight and bias, hidden size 32
    assert rows["pooler"]["state"] == "frozen" and result.plot is None


def test_reinit_recipe_marks_the_reinitialised_blocks(tiny_model_dir):
    result = explain(
        shipped("reinit-top-2", tiny_model_dir), num_labels=2, steps=10, plot=None, show_recipe=False
    )
    assert [r["block"] for r in result.rows if r["reinit"]] == ["layer.2", "layer.3", "pooler"]


def test_cli_prints_the_table_totals_and_schedule(tiny_model_dir, tmp_path, capsys):
    plot = tmp_path / "out.png"
    args = ["explain", "top-2-only", f"model.name={tiny_model_dir}", "--num-labels", "3", "--steps", "40"]
    assert main([*args, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "block       parameters  trainable  state" in out
    assert "3 output(s)" in out and "optimizer state:" in out and "40 optimizer steps (--steps)" in out
    assert plot.is_file()
    assert main([*args, "--no-plot"]) == 0


def test_optimizer_state_memory_follows_the_optimizer():
    from finetune.recipe.optimizer import OptimizerSection
    from finetune.training.explain import state_slots

    assert state_slots(OptimizerSection(name="adamw"))[0] == 2
    assert state_slots(OptimizerSection(name="sgd"))[0] == 1  # momentum 0.9 by default
    assert state_slots(OptimizerSection(name="sgd", momentum=0.0)) == (0, "no state")


def explain_cli(recipe, tiny_model_dir, *flags):
    return main(["explain", str(recipe), f"model.name={tiny_model_dir}", "--num-labels", "2", *flags])


def test_cli_prints_the_table_before_the_resolved_recipe(tiny_model_dir, tmp_path, capsys):
    assert explain_cli("base", tiny_model_dir, "--no-plot") == 0
    out = capsys.readouterr().out
    assert out.index("block       parameters") < out.index("# resolved recipe")


def test_cli_writes_the_plot_beside_the_recipe_and_never_replaces_it(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    recipe = tmp_path / "recipes" / "mine.yaml"
    recipe.parent.mkdir()
    recipe.write_text("extends: base\n")
    monkeypatch.chdir(tmp_path)
    plot = recipe.parent / "mine.explain.png"
    assert explain_cli(recipe, tiny_model_dir) == 0
    assert plot.read_bytes().startswith(PNG) and not (tmp_path / "explain.png").exists()
    plot.write_bytes(b"an earlier plot")
    capsys.readouterr()
    assert explain_cli(recipe, tiny_model_dir) == 2
    err = capsys.readouterr().err
    assert f"{plot} already exists; pass --overwrite to replace it" in err and "Traceback" not in err
    assert plot.read_bytes() == b"an earlier plot"
    assert explain_cli(recipe, tiny_model_dir, "--overwrite") == 0
    assert plot.read_bytes().startswith(PNG)
