"""The whole recipe: one section per concern, and the checks that span sections."""

from pydantic import Field, model_validator

from .base import AUTO, Section
from .calibration import CALIBRATED_TASKS, CalibrationSection
from .checkpoints import CheckpointsSection
from .data import DataSection
from .distill import DistillSection
from .distributed import DistributedSection
from .early_stopping import TASK_METRICS, EarlyStoppingSection, is_task_metric
from .freeze import FreezeSection
from .guards import GuardsSection
from .layer_lr import LayerLRSection
from .loss import LossSection
from .model import ModelSection
from .optimizer import OptimizerSection
from .output import OutputSection
from .peft import PeftSection
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
    peft: PeftSection = Field(default_factory=PeftSection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    regularization: RegularizationSection = Field(default_factory=RegularizationSection)
    loss: LossSection = Field(default_factory=LossSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    early_stopping: EarlyStoppingSection = Field(default_factory=EarlyStoppingSection)
    calibration: CalibrationSection = Field(default_factory=CalibrationSection)
    output: OutputSection = Field(default_factory=OutputSection)
    checkpoints: CheckpointsSection = Field(default_factory=CheckpointsSection)
    guards: GuardsSection = Field(default_factory=GuardsSection)
    distributed: DistributedSection = Field(default_factory=DistributedSection)

    def _loss_fits_task(self) -> list[str]:
        """`loss:` and `training.sampler` against the task (see recipe/loss.py)."""
        task, loss, problems = self.model.task, self.loss, []
        if task == "regression":
            problems += [
                f"loss.{key}: weighs classes, and regression has none; remove it (or set model.task)"
                for key, on in (
                    ("class_weights", loss.class_weights != "none"),
                    ("focal_gamma", loss.focal_gamma > 0),
                )
                if on
            ]
        if self.training.sampler == "balanced" and task != "classification":
            problems.append(
                f"training.sampler: `balanced` draws by class, one class per example (classification); "
                f"{task} has none to balance; use loss.class_weights instead, or `shuffle`"
            )
        if self.training.sampler == "balanced" and loss.class_weights != "none":
            problems.append(
                "training.sampler: `balanced` already corrects the class imbalance; with loss.class_weights "
                "it would be corrected twice. Choose one (set loss.class_weights: none or training.sampler: shuffle)"
            )
        return problems

    def _task_fits_data(self) -> list[str]:
        """Keys that only some tasks read (see recipe/data.py), and what peft cannot combine with."""
        task, data = self.model.task, self.data
        problems = []
        if task == "token_classification" and data.text_pair is not None:
            problems.append(
                "data.text_pair: token_classification tags one text per example; remove data.text_pair"
            )
        windows = data.long_documents is not None  # data/windows.py
        if windows and task == "token_classification":
            problems.append(
                "data.long_documents: token_classification tags the words of whole sentences, not windows; "
                "remove data.long_documents"
            )
        if windows and self.regularization.augments_text:
            problems.append(
                "data.long_documents: regularization.word_deletion/word_swap re-tokenize the training texts "
                "every epoch, truncating them; set them to 0 or remove data.long_documents"
            )
        if self.peft.enabled and self.freeze.gradual is not None:
            problems.append(
                "freeze.gradual: peft keeps every pretrained weight frozen, so there is nothing to unfreeze; "
                "remove freeze.gradual or set peft.method: none"
            )
        if data.format == "conll" and task != "token_classification":
            problems.append(
                f"data.format: `conll` files hold token tags; set model.task: token_classification (is {task})"
            )
        return problems

    def _gradual_fits_training(self) -> list[str]:
        """Gradual unfreezing by epochs must fit in the run's epochs (see recipe/freeze.py)."""
        gradual, training = self.freeze.gradual, self.training
        by_epochs = gradual is not None and gradual.unit == "epoch" and training.max_steps is None
        if by_epochs and training.epochs != AUTO and gradual.every >= training.epochs:
            return [
                f"freeze.gradual.every: {gradual.every:g} epochs, but training.epochs is {training.epochs:g}, "
                f"so nothing would ever unfreeze; make `every` smaller or train longer"
            ]
        return []

    def _faults_fit_run(self) -> list[str]:
        """Resuming, guards and distribution against the rest of the recipe (see training/checkpoints.py, guards.py)."""
        problems = []
        if self.checkpoints.resume == "auto" and self.output.dir is None:
            problems.append(
                "checkpoints.resume: `auto` needs a fixed output.dir (a timestamped folder is new every run); "
                "set output.dir"
            )
        divergence = self.guards.divergence
        task_metrics = TASK_METRICS[self.model.task]
        if (
            divergence is not None
            and divergence.metric not in task_metrics
            and not self.evaluation.extra_metrics
        ):
            problems.append(
                f"guards.divergence.metric: '{divergence.metric}' is not a {self.model.task} metric; "
                f"choose one of {', '.join(task_metrics)}"
            )
        if self.freeze.gradual is not None and self.distributed.strategy != "ddp":
            problems.append(
                f"distributed.strategy: gradual unfreezing (freeze.gradual) works with `ddp` only; "
                f"{self.distributed.strategy} fixes the trainable parameters when it shards the model"
            )
        return problems + self._sharding_fits()

    def _sharding_fits(self) -> list[str]:
        """Regularizers that read or replace whole weights outside the forward pass: under FSDP each
        process holds a shard of every weight there (docs/multi-gpu.md, "What works with each strategy")."""
        if self.distributed.strategy != "fsdp":
            return []
        reg = self.regularization
        needs_whole = {
            "l1": reg.l1 > 0,
            "l2": reg.l2 > 0,
            "l2_sp": reg.l2_sp > 0,
            "mixout": reg.mixout > 0,
            "swa_start": reg.swa_start is not None,
        }
        problems = []
        if self.peft.enabled:
            problems.append(
                "peft: adapters with distributed.strategy fsdp are not supported: their weights are saved "
                "by the main process alone, which holds only a shard of them; use strategy ddp (the "
                "adapters are small, and DDP trains them on whole replicas)"
            )
        return problems + [
            f"regularization.{key}: reads whole weights outside the forward pass, and with "
            f"distributed.strategy fsdp each process holds only a shard of them; use strategy ddp, or "
            f"turn {key} off" + (" (optimizer.weight_decay is the sharding-safe L2)" if key == "l2" else "")
            for key, on in needs_whole.items()
            if on
        ]

    def to_yaml_dict(self) -> dict:
        """Plain data for writing the resolved recipe: every key, defaults included."""
        return self.model_dump(mode="json")

    def _schedule_fits_run(self) -> list[str]:
        """Schedule and regularization keys that depend on the optimizer, the task or early stopping."""
        schedule, reg, task = self.schedule, self.regularization, self.model.task
        problems = []
        lr = self.optimizer.lr  # `auto` is checked again once resolved (training/defaults.py)
        if schedule.min_lr is not None and lr != AUTO and schedule.min_lr >= lr:
            problems.append(
                f"schedule.min_lr: {schedule.min_lr:g} must be below optimizer.lr ({self.optimizer.lr:g})"
            )
        stopping = self.early_stopping
        patience = 1 if schedule.patience is None else schedule.patience
        if schedule.name == "plateau" and stopping.enabled and patience + 1 >= stopping.patience:
            given = "" if schedule.patience is not None else " by default"
            problems.append(
                f"schedule.patience: {patience}{given} cuts the LR at evaluation {patience + 1} without "
                f"improvement, but early stopping ends the run at evaluation {stopping.patience}; lower "
                f"schedule.patience or raise early_stopping.patience"
            )
        if reg.augments_text and task == "token_classification":
            problems.append(
                "regularization.word_deletion/word_swap: deleting or moving words would misalign the tags "
                "of token_classification; set them to 0"
            )
        return problems

    def _performance_fits(self) -> list[str]:
        """The prefix cache and compilation against freezing, adapters and augmentation (model/prefix_cache.py)."""
        training, problems = self.training, []
        if not training.prefix_cache:
            return problems
        needs = [
            (
                not self.freeze.eval_mode,
                "needs freeze.eval_mode: true (cached outputs must not depend on dropout)",
            ),
            (training.compile, "cannot be combined with training.compile; turn one of them off"),
            (self.peft.enabled, "cannot be combined with peft adapters; set training.prefix_cache: false"),
            (
                self.regularization.augments_text,
                "would never hit: regularization.word_deletion/word_swap change the texts every epoch",
            ),
            (
                self.distributed.strategy != "ddp",
                f"works with distributed.strategy ddp, not {self.distributed.strategy}",
            ),
        ]
        return [f"training.prefix_cache: {message}" for failed, message in needs if failed]

    def _calibration_fits(self) -> list[str]:
        """An explicit `calibration.temperature: true` where it cannot apply (see recipe/calibration.py)."""
        if self.calibration.temperature is not True:
            return []
        task, spread = self.model.task, self.distributed
        if task not in CALIBRATED_TASKS:
            return [
                f"calibration.temperature: temperature scaling calibrates the softmax of single-label "
                f"classification; model.task is {task}. Set calibration.temperature: false (or auto)"
            ]
        sharded = spread.strategy == "fsdp" or (
            spread.strategy == "deepspeed" and spread.deepspeed_options.stage == 3
        )
        if sharded:
            return [
                f"calibration.temperature: {spread.strategy} shards the head's weights, which cannot be "
                f"rescaled in place; set calibration.temperature: false (or auto, which skips it) or use ddp"
            ]
        return []

    def _distill_fits(self) -> list[str]:
        """Distillation against the task and augmentation (see finetune/distill/teacher.py)."""
        if not self.distill.enabled:
            return []
        problems = []
        if self.model.task == "token_classification":
            problems.append(
                "distill.teacher: distillation covers one output per text (classification, regression, "
                "multi_label), not token_classification's one per token; remove the distill section"
            )
        if self.regularization.augments_text:
            problems.append(
                "distill.teacher: the teacher's outputs are computed once per training text, and "
                "regularization.word_deletion/word_swap change the texts every epoch; set them to 0"
            )
        if self.distill.tokenizer == "own" and self.data.long_documents is not None:
            problems.append(
                "distill.tokenizer: `own` tokenizes each text the teacher's way, which cuts other windows "
                "than the student's (data.long_documents); use a teacher with the student's tokenizer (`same`)"
            )
        return problems

    @model_validator(mode="after")
    def _sections_agree(self) -> "Recipe":
        """Checks that need two sections at once; each names the key to change."""
        task = self.model.task
        problems = []
        metric = self.early_stopping.watched_metric(task)
        if not is_task_metric(metric, task) and not self.evaluation.extra_metrics:
            problems.append(
                f"early_stopping.metric: '{metric}' is not a {task} metric; "
                f"choose one of {', '.join(TASK_METRICS[task])} (or add it via evaluation.extra_metrics)"
            )
        if task == "regression" and self.regularization.label_smoothing > 0:
            problems.append("regularization.label_smoothing: only applies to classification; set it to 0")
        problems += self._loss_fits_task()
        problems += self._task_fits_data()
        problems += self._gradual_fits_training()
        problems += self._faults_fit_run()
        problems += self._schedule_fits_run()
        problems += self._performance_fits()
        problems += self._calibration_fits()
        problems += self._distill_fits()
        if problems:
            raise ValueError("\n".join(problems))
        return self
