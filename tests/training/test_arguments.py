"""The TrainingArguments a recipe implies and the batch line that describes them."""

from __future__ import annotations

from types import SimpleNamespace

from finetune.training.arguments import batch_line


def test_batch_line_spells_out_the_global_batch():
    args = SimpleNamespace(per_device_train_batch_size=8, world_size=2, gradient_accumulation_steps=2)
    trainer = SimpleNamespace(args=args, planned_steps=lambda: 120)
    assert batch_line(trainer) == (
        "batch: 32 per optimizer step = 8 per device x 2 processes x 2 accumulation steps; 120 optimizer steps"
    )
    args.world_size, args.gradient_accumulation_steps = 1, 1
    assert batch_line(trainer).startswith(
        "batch: 8 per optimizer step = 8 per device x 1 process x 1 accumulation step;"
    )
