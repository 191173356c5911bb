"""`finetune validate`: training's checks that need no weights, every problem in one message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from finetune.cli import main


def write_recipe(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


def test_validate_reports_every_problem_of_data_and_layers_at_once(tiny_recipe, tmp_path, capsys):
    tiny_recipe["data"]["train"] = str(tmp_path / "trian.csv")  # train.csv is there
    tiny_recipe["data"]["text_pair"] = "sentense"
    tiny_recipe["freeze"] = {"layers": [7]}  # the tiny model has 4 layers
    tiny_recipe["reinit"] = {"top": 5}
    tiny_recipe["layer_lr"] = {"lrs": {"-6": 1e-4}}
    assert main(["validate", write_recipe(tmp_path / "r.yaml", tiny_recipe)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith(f"finetune: error: recipe '{tmp_path / 'r.yaml'}' cannot train (5 problems):")
    lines = err.splitlines()[1:]
    assert lines[0] == (
        f"  - data.train: file not found: {tmp_path / 'trian.csv'}. Files with similar names there: train.csv."
    )
    assert lines[1] == (
        f"  - data.text_pair: column 'sentense' not found in {tmp_path / 'dev.csv'}. Columns there: text, label."
    )
    assert lines[2] == "  - reinit.top: 5 layers, but the model has 4 encoder layers; use at most 4"
    assert lines[3].startswith("  - layer_lr.lrs: layer -6 (from '-6') does not exist: the model has 4")
    assert lines[4].startswith("  - freeze.layers: layer 7 (from 7) does not exist: the model has 4")


def test_validate_needs_the_model_config_not_its_weights(tiny_recipe, tiny_model_dir, tmp_path, capsys):
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(tiny_model_dir / "config.json", config_only)  # no weights, no tokenizer
    tiny_recipe["model"]["name"] = str(config_only)
    tiny_recipe["freeze"] = {"layers": [-1], "patterns": ["attention"]}
    assert main(["validate", write_recipe(tmp_path / "r.yaml", tiny_recipe)]) == 0
    assert capsys.readouterr().err.endswith("is valid\n")


def test_validate_checks_columns_by_position_and_of_word_lists(tmp_path, tiny_model_dir, capsys):
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("good film,pos\nbad film,neg\n", encoding="utf-8")
    args = ["validate", "base", f"model.name={tiny_model_dir}", f"data.train={headerless}"]
    assert main([*args, "data.text=0", "data.label=2"]) == 2
    assert "data.label: column position 2 is out of range" in capsys.readouterr().err
    words = tmp_path / "words.jsonl"
    words.write_text(json.dumps({"tokens": ["Ada", "wrote"], "tags": ["B-PER", "O"]}) + "\n")
    args = ["validate", "base", f"model.name={tiny_model_dir}", "model.task=token_classification"]
    assert main([*args, f"data.train={words}", "data.text=tokens", "data.label=tag"]) == 2
    assert "data.label: column 'tag' not found" in capsys.readouterr().err
    assert main([*args, f"data.train={words}", "data.text=tokens", "data.label=tags"]) == 0


def test_validate_suggests_an_alias_for_an_unknown_model_offline(capsys):
    assert main(["validate", "demo", "model.name=minilm-l66"]) == 2
    assert capsys.readouterr().err == (
        "finetune: error: model.name: 'minilm-l66' is not a local folder, an alias or a model in the "
        "Hugging Face cache, and the hub cannot be reached (offline). Did you mean 'minilm-l6'? Offline, "
        "use an alias (minilm-l6), a cached model or a local model folder.\n"
    )


def test_validate_suggests_a_cached_model_offline(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    (tmp_path / "hub" / "models--prajjwal1--bert-tiny" / "snapshots").mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["validate", "demo", "model.name=prajjwal1/bert-tiy"]) == 2
    assert "Did you mean 'prajjwal1/bert-tiny'?" in capsys.readouterr().err


class NoSuchRepository(BaseHTTPRequestHandler):
    """A hub that has no repositories: every request is answered as the hub answers an unknown id."""

    def do_GET(self):
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def empty_hub():
    server = HTTPServer(("127.0.0.1", 0), NoSuchRepository)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_validate_names_a_model_the_hub_does_not_have(empty_hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": empty_hub, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "finetune.cli", "validate", "demo", "model.name=bert-base-uncasd"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "finetune: error: model.name: 'bert-base-uncasd' was not found on the Hugging Face hub, and it is "
        "not a local folder; check the spelling (e.g. `bert-base-uncased`, `org/name`), or log in "
        "(`hf auth login`) for a private model\n"
    )


def test_validate_refuses_a_hub_metric_without_the_opt_in(capsys):
    assert main(["validate", "demo", "evaluation.extra_metrics=[glue:mrpc]"]) == 2
    assert "'glue:mrpc' is an `evaluate` metric" in capsys.readouterr().err
    assert (
        main(
            ["validate", "demo", "evaluation.extra_metrics=[glue:mrpc]", "evaluation.trust_remote_code=true"]
        )
        == 0
    )
