"""`data:` where the examples come from and which columns hold text and labels."""

import codecs
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Section

Column = str | int


class HubDataset(Section):
    name: str
    """Hub dataset id, e.g. `glue` or `stanfordnlp/imdb` (needs internet)."""

    config: str | None = None
    """Dataset configuration, e.g. `sst2` for `glue`."""

    train_split: str = "train"
    """Split used for training."""

    validation_split: str | None = "validation"
    """Split used for validation; null to carve `data.validation_fraction` out of train."""

    revision: str | None = None
    """Dataset revision on the hub."""


class LongDocuments(Section):
    stride: int | None = Field(None, ge=0)
    """Tokens that consecutive windows share, so that no phrase is only ever seen cut in two; null: a
    quarter of `data.max_length`. Must be below `max_length` minus the special tokens (and, for
    sentence pairs, minus the first text)."""

    aggregate: Literal["mean", "max", "first"] = "mean"
    """How the windows of one document make its prediction: `mean` of their logits (regression: of
    their values), element-wise `max` (a class or label is as likely as its most confident window),
    or the `first` window only (what truncation would see, but trained on every window)."""


class DataSection(Section):
    dir: str | None = None
    """Folder that relative `train`/`validation` paths are resolved against (default: the current
    directory). `builtin:demo` is the small sentiment set shipped with finetune."""

    train: str | None = None
    """Training file: `.csv`, `.tsv`, `.json`, `.jsonl` or `.parquet`."""

    validation: str | None = None
    """Validation file. When absent, a seeded, stratified `validation_fraction` of train is held out."""

    validation_fraction: float = Field(0.1, gt=0, lt=1)
    """Share of the training file held out for validation when `validation` is not given."""

    hub: HubDataset | None = None
    """Load from the Hugging Face hub instead of files (needs internet); the file keys (`train`,
    `validation`, `dir`, `format`, `header`, `encoding`) then stay unset."""

    format: Literal["auto", "csv", "tsv", "json", "jsonl", "parquet", "conll"] = "auto"
    """File format; `auto` reads it from the file extension. TSV is read with no quote processing.
    `conll` (token_classification): one word and its tag per line, blank lines between sentences;
    with task `token_classification`, `auto` reads every file that is not JSON or Parquet as CoNLL."""

    header: bool = True
    """Whether CSV/TSV files have a header row. Without one, columns are named by position: 0, 1, ...
    Unset, it is `false` when `text`, `text_pair` or `label` is a position (an integer), else `true`;
    `true` with a position is an error (it would read the first row as a header)."""

    encoding: str = "utf-8"
    """Text encoding of CSV/TSV/JSON/CoNLL files, e.g. `latin-1` or `cp1252` for files not written as
    UTF-8 (a byte the encoding cannot decode is an error naming its line). A UTF-8 byte-order mark is
    skipped."""

    text: Column = "text"
    """Column with the (first) text: a name, or a 0-based position for files without a header."""

    text_pair: Column | None = None
    """Column with the second text of a sentence pair (MRPC, STS-B, NLI); null for single sentences."""

    label: Column = "label"
    """Column with the label: class names or ids for classification, a float for regression, a list
    of names (JSON) or a `label_separator`-separated string (CSV/TSV) for multi_label, a list of tags
    (JSON) for token_classification. For token_classification, `text` is then the column of word lists."""

    label_separator: str = Field(",", min_length=1)
    """`multi_label` only: the separator between labels in a CSV/TSV label cell (`sports,politics`;
    an empty cell is an example with no label). JSON files give a list instead."""

    max_length: int = Field(128, ge=8, le=8192)
    """Token limit per example (pair texts share it); longer inputs are truncated, unless
    `long_documents` splits them into windows. Each run reports how many texts were longer."""

    long_documents: LongDocuments | None = None
    """Split texts longer than `max_length` into overlapping windows (`{}` or `true` for the defaults)
    in training, evaluation, `finetune predict` and `evaluate`: each window is a training example with
    its document's label; predictions and metrics are per document, from its windows' aggregated
    logits. Sentence pairs window the second text. Not for token_classification. See
    docs/data-and-tasks.md."""

    max_train_samples: int | None = Field(None, gt=0)
    """Use only the first N training rows (after shuffling with the seed): quick runs, benchmarks."""

    max_eval_samples: int | None = Field(None, gt=0)
    """Use only the first N validation rows."""

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value}'; e.g. utf-8, latin-1, cp1252") from None
        return value

    @field_validator("long_documents", mode="before")
    @classmethod
    def _long_documents_shorthand(cls, value: Any) -> Any:
        """`long_documents: true` means the defaults; `false` means off."""
        if isinstance(value, bool):
            return {} if value else None
        return value

    @model_validator(mode="after")
    def _stride_fits(self) -> "DataSection":
        windows = self.long_documents
        if windows is not None and windows.stride is not None and windows.stride >= self.max_length:
            raise ValueError(
                f"data.long_documents.stride: {windows.stride} tokens of overlap do not fit in windows of "
                f"data.max_length {self.max_length}; set a stride well below max_length (e.g. "
                f"{self.max_length // 4}), or leave it unset for a quarter of max_length"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _header_from_columns(cls, data: Any) -> Any:
        """Integer column positions mean a file without a header, unless `header` says otherwise."""
        if not isinstance(data, dict) or data.get("hub") is not None:
            return data
        positions = [key for key in ("text", "text_pair", "label") if _is_position(data.get(key))]
        if positions and data.get("header") is True:
            raise ValueError(
                f"data.header is true but data.{positions[0]} is a column position "
                f"({data[positions[0]]}): with a header row, name the column (data.{positions[0]}: "
                f"<its header>); for a file without a header row, set data.header: false"
            )
        if data.get("header") is None:
            return {**data, "header": not positions}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "DataSection":
        if self.hub is None:
            return self
        # file-only keys that a hub dataset would silently ignore; compared with their defaults, since
        # a resolved recipe.yaml writes every key (format: auto, header: true) and must load again
        file_keys = {
            "train": self.train is not None,
            "validation": self.validation is not None,
            "dir": self.dir is not None,
            "format": self.format != "auto",
            "header": not self.header,
            "encoding": codecs.lookup(self.encoding).name != "utf-8",
        }
        given = [f"data.{key}" for key, is_set in file_keys.items() if is_set]
        if given:
            raise ValueError(
                f"give either files (data.train, ...) or `data.hub` (hub dataset), not both: with data.hub, "
                f"{', '.join(given)} would be ignored; remove {'it' if len(given) == 1 else 'them'}. The hub "
                f"dataset's splits are data.hub.train_split and data.hub.validation_split (null to hold out "
                f"data.validation_fraction of train)"
            )
        return self


def _is_position(column: Any) -> bool:
    return isinstance(column, int) and not isinstance(column, bool)
