"""The model card, `model/README.md` (finetune/runs/model_card.py)."""

import yaml


def test_model_card_has_metadata_use_data_and_results(run_dir):
    text = (run_dir / "model" / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "text-classification"
    assert "accuracy" in front["metrics"] and "base_model" not in front  # a local folder has no hub id
    for heading in (
        "## Intended use and limitations",
        "## Training data",
        "## Training procedure",
        "## Evaluation results",
        "## How to use",
    ):
        assert heading in text, heading
    assert "assigns one of the labels (neg, pos) to a text" in text
