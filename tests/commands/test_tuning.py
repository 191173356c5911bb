"""`finetune lr-find`, `sweep` and `cv` (finetune/commands/tuning.py): what each command asks for.
The searches themselves are tested in tests/search/."""

import pytest

from finetune.cli import build_parser, main


def test_sweep_without_a_sweep_file_says_what_to_give(capsys):
    assert main(["sweep", "demo"]) == 2
    assert "give a recipe and a sweep file: finetune sweep RECIPE SWEEP.yaml" in capsys.readouterr().err


def test_cv_takes_repeats_or_seeds_not_both(capsys):
    parser = build_parser()
    assert parser.parse_args(["cv", "demo", "--seeds", "1", "2"]).seeds == [1, 2]
    assert parser.parse_args(["cv", "demo"]).folds == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["cv", "demo", "--repeats", "2", "--seeds", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
