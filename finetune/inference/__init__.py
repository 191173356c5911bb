"""Using a trained model: `finetune predict` and `finetune evaluate`."""
