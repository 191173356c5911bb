"""The whole recipe: one section per concern, and the checks that span sections."""

from pydantic import Field, model_validator

from .base import Section
from .data import DataSection
from .early_stopping import TASK_METRICS, EarlyStoppingSection
from .freeze import FreezeSection
from .layer_lr import LayerLRSection
from .model import ModelSection
from .optimizer import OptimizerSection
from .output import OutputSection
from .regularization import RegularizationSection
from .reinit import ReinitSection
from .schedule import ScheduleSection
from .training import EvaluationSection, TrainingSection


class Recipe(Section):
    """A fully resolved recipe (after `extends` and command-line overrides)."""

    name: str | None = None
    """Recipe name, used in default run-folder names; defaults to the recipe file's name."""

    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    freeze: FreezeSection = Field(default_factory=FreezeSection)
    layer_lr: LayerLRSection = Field(default_factory=LayerLRSection)
    reinit: ReinitSection = Field(default_factory=ReinitSection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    regularization: RegularizationSection = Field(default_factory=RegularizationSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    early_stopping: EarlyStoppingSection = Field(default_factory=EarlyStoppingSection)
    output: OutputSection = Field(default_factory=OutputSection)

    def _gradual_fits_training(self) -> list[str]:
        """Gradual unfreezing by epochs must fit in the run's epochs (see recipe/freeze.py)."""
        gradual, training = self.freeze.gradual, self.training
        by_epochs = gradual is not None and gradual.unit == "epoch" and training.max_steps is None
        if by_epochs and gradual.every >= training.epochs:
            return [
                f"freeze.gradual.every: {gradual.every:g} epochs, but training.epochs is {training.epochs:g}, "
                f"so nothing would ever unfreeze; make `every` smaller or train longer"
            ]
        return []

    def to_yaml_dict(self) -> dict:
        """Plain data for writing the resolved recipe: every key, defaults included."""
        return self.model_dump(mode="json")

    @model_validator(mode="after")
    def _sections_agree(self) -> "Recipe":
        """Checks that need two sections at once; each names the key to change."""
        task = self.model.task
        problems = []
        metric = self.early_stopping.watched_metric(task)
        if metric not in TASK_METRICS[task] and not self.evaluation.extra_metrics:
            problems.append(
                f"early_stopping.metric: '{metric}' is not a {task} metric; "
                f"choose one of {', '.join(TASK_METRICS[task])} (or add it via evaluation.extra_metrics)"
            )
        if task == "regression" and self.regularization.label_smoothing > 0:
            problems.append("regularization.label_smoothing: only applies to classification; set it to 0")
        problems += self._gradual_fits_training()
        if problems:
            raise ValueError("\n".join(problems))
        return self
