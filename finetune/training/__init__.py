"""Training: the function that assembles a run, the Trainer adapter, callbacks, guards, checkpoints,
metrics, the `auto` defaults, and the commands that plan a run without training it (validate, explain)."""
