"""`finetune validate` and `finetune explain` (finetune/commands/recipes.py)."""

import yaml

from finetune.cli import main


def test_validate_prints_the_resolved_recipe(capsys):
    assert main(["validate", "demo", "training.epochs=1"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["training"]["epochs"] == 1
    assert resolved["data"]["dir"] == "builtin:demo"


def test_explain_shows_trainable_blocks(tiny_model_dir, capsys, tmp_path):
    args = ["explain", "base", f"model.name={tiny_model_dir}", "freeze.embeddings=true", "freeze.layers=[0]"]
    assert main([*args, "--plot", str(tmp_path / "explain.png")]) == 0
    out = capsys.readouterr().out
    assert "embeddings" in out and "frozen" in out
    assert "layer.1" in out and "trainable" in out
