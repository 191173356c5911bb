"""`output:` where a run is written and what it keeps."""

from typing import Literal

from .base import Section


class OutputSection(Section):
    dir: str | None = None
    """Run folder. Default: `<root>/<recipe name>-<timestamp>`. An existing folder is never overwritten."""

    root: str = "runs"
    """Parent folder for default run folders."""

    save_model: bool = True
    """Save the best model and tokenizer (Hugging Face format) in `<run>/model`."""

    plots: bool = True
    """Write PNG plots of the learning rate, losses and validation metric."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = []
    """Experiment trackers that also receive every log, through the Trainer's integrations:
    `tensorboard` writes `<run>/tensorboard` (`tensorboard --logdir <run>`); `wandb` and `mlflow`
    need their package installed and configured."""
