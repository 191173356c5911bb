"""A run folder read back (finetune/runs/reading.py): the recipe keys that differ from the defaults."""

from finetune.runs.reading import changed_keys


def test_changed_keys_compare_with_the_defaults():
    from finetune.recipe import Recipe

    recipe = Recipe().to_yaml_dict()
    recipe["optimizer"]["lr"] = 5e-5
    recipe["output"]["dir"] = "somewhere"
    assert changed_keys(recipe) == {"optimizer.lr": 5e-5}
