"""`output:` where a run is written and what it keeps."""

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
