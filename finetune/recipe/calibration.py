"""`calibration:` temperature scaling of a classifier's probabilities, fitted after training.

A fine-tuned classifier's softmax is rarely calibrated: of the answers it gives with 95% confidence,
more or fewer than 95% are right (over-confident after long training, often under-confident after
a short one). Temperature scaling (Guo et al., 2017) divides the logits by
one number T > 0 fitted on the validation split; argmax, and so every accuracy metric, is unchanged.
The fitted T is folded into the saved head (finetune/calibration/folding.py), so `pipeline` and
`finetune predict` return the calibrated probabilities with no finetune code.
"""

from typing import Literal

from pydantic import Field

from .base import Section

CALIBRATED_TASKS = ("classification",)  # one softmax per example; see `temperature`


class CalibrationSection(Section):
    temperature: bool | Literal["auto"] = "auto"
    """Fit temperature scaling on the validation split after training and fold it into the saved
    head (logits / T), so the saved model's probabilities are calibrated; report.md shows the
    expected calibration error and a reliability diagram before and after. `auto`: on for
    single-label `classification`, skipped for the other tasks (benchmarks/calibration.md). `true`
    is refused for regression, multi_label and token_classification, and with FSDP or DeepSpeed
    ZeRO-3, whose sharded heads cannot be rescaled in place."""

    bins: int = Field(15, ge=2, le=100)
    """Equal-width confidence bins of the expected calibration error and the reliability diagram."""

    def wanted(self, task: str) -> bool:
        """Whether a run of `task` calibrates (resolving `auto`)."""
        return task in CALIBRATED_TASKS if self.temperature == "auto" else self.temperature
