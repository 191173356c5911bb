"""The `finetune` command: clear errors with a non-zero exit, fast start-up."""

import subprocess
import sys

import yaml

from finetune.cli import main


def test_bad_recipe_prints_one_message_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"lrr": 1e-5}}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune: error: recipe is invalid")
    assert "did you mean 'lr'?" in err and "Traceback" not in err


def test_help_does_not_import_torch():
    code = "import sys; from finetune.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
