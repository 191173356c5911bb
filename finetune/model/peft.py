"""Parameter-efficient fine-tuning with `peft`: adapters on a frozen encoder, a fully trained head.

`add_adapters` applies a `peft:` section to a loaded model *in place*: the model keeps its class
and its parameter names (adapter weights appear inside the layers they adapt, e.g.
`bert.encoder.layer.3.attention.self.query.lora_A.default.weight`), so freezing, parameter
groups, early stopping and `finetune explain` work on it unchanged. The returned `PeftModel`
wrapper is only needed to save: the adapter alone, or merged into the base weights.

- LoRA (Hu et al., 2021): W x + (alpha / r) B A x with rank-r matrices A, B; B starts at zero,
  so training starts from the pretrained function. Default targets: the attention query and
  value projections, as in the paper.
- IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
  In-Context Learning"): learned vectors that rescale keys, values and the feed-forward
  activations; even fewer parameters than LoRA.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError
from finetune.recipe.peft import PeftSection

if TYPE_CHECKING:
    from torch import nn

ADAPTER_CONFIG = "adapter_config.json"

# LoRA targets per architecture: the attention query and value projections (Hu et al., 2021).
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta-v2": ["query_proj", "value_proj"],
    "deberta": ["in_proj"],
    "mpnet": ["q", "v"],
    "modernbert": ["Wqkv"],  # one fused query/key/value projection
}

# IA3 targets (keys, values, feed-forward output) and which of them are feed-forward layers.
_BERT_IA3 = (["key", "value", "output.dense"], ["output.dense"])
IA3_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "bert": _BERT_IA3,
    "roberta": _BERT_IA3,
    "xlm-roberta": _BERT_IA3,
    "camembert": _BERT_IA3,
    "electra": _BERT_IA3,
    "albert": (["key", "value", "ffn_output"], ["ffn_output"]),
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    "deberta-v2": (["key_proj", "value_proj", "output.dense"], ["output.dense"]),
    "deberta": (["in_proj", "output.dense"], ["output.dense"]),
    "mpnet": (["k", "v", "output.dense"], ["output.dense"]),
    "modernbert": (["Wqkv", "mlp.Wo"], ["mlp.Wo"]),
}


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's linear layers: what `target_modules` can name."""
    import torch

    names = {
        name.rpartition(".")[2]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    return sorted(names)


def default_targets(spec: PeftSection, model: nn.Module) -> tuple[list[str] | str, list[str] | None]:
    """`target_modules` (and IA3's `feedforward_modules`) from the recipe, else the architecture's default."""
    model_type = model.config.model_type
    table = LORA_TARGETS if spec.method == "lora" else IA3_TARGETS
    if spec.target_modules is None and model_type not in table:
        raise FinetuneError(
            f"peft.target_modules: finetune has no default {spec.method} targets for architecture '{model_type}' "
            f"(known: {', '.join(sorted(table))}); list them, e.g. peft.target_modules=[query,value]. "
            f"This model's linear layers: {', '.join(linear_module_names(model))}"
        )
    if spec.method == "lora":
        return spec.target_modules or LORA_TARGETS[model_type], None
    targets, feedforward = IA3_TARGETS.get(model_type, ([], []))
    if spec.target_modules is not None:
        targets = spec.target_modules
        feedforward = [name for name in feedforward if name in targets]
    return targets, spec.feedforward_modules if spec.feedforward_modules is not None else feedforward


def trained_modules(model: nn.Module, extra: list[str]) -> list[str]:
    """Modules trained in full: the task head, the pooler, every freshly initialised module, `extra`.

    The head is what the anatomy calls `head` (everything above the encoder). The pooler (BERT's
    dense + tanh over [CLS]) is read only by the classification head, and RoBERTa's head holds the
    same dense layer, which LoRA trains (Hu et al., 2021); so it trains with the head. A module the
    checkpoint did not have (`model.new_parameters`) is random and must train, whatever it is.
    """
    from finetune.model.anatomy import model_anatomy

    try:
        blocks = model_anatomy(model).blocks
        head, pooler = blocks["head"], blocks.get("pooler", [])
    except FinetuneError:  # an architecture the anatomy does not know: the heads transformers uses
        head = [n for n, _ in model.named_parameters() if n.split(".")[0] in ("classifier", "score")]
        pooler = []
    # the head's top-level modules: peft's task types save `classifier` whole anyway, and a saved
    # module nested inside it (RoBERTa's `classifier.dense`) would train a copy the forward never reads
    modules = {name.split(".")[0] for name in head}
    # elsewhere the modules that own the parameters (peft's IA3 cannot unload containers such as BertPooler)
    modules |= {name.rpartition(".")[0] for name in [*pooler, *getattr(model, "new_parameters", [])]}
    modules |= set(extra)
    return sorted(m for m in modules if m and not any(m.startswith(other + ".") for other in modules))


def freeze_adapters_in_frozen_layers(model: nn.Module, frozen_blocks: list[str]) -> None:
    """Adapters inside encoder layers that `freeze:` froze do not train: they keep their identity start
    (LoRA's B = 0, IA3's scales = 1), so those layers compute what the pretrained ones did."""
    layers = [block for block in frozen_blocks if block.startswith("layer.")]
    if not layers:
        return
    from finetune.model.anatomy import model_anatomy

    anatomy = model_anatomy(model)
    if len(layers) == anatomy.num_layers:
        raise FinetuneError(
            "freeze.layers: every encoder layer is frozen, so no adapter would train; freeze fewer layers "
            "or turn peft off (peft.method: none) to train the head alone"
        )
    parameters = dict(model.named_parameters())
    for block in layers:
        for name in anatomy.blocks[block]:
            parameters[name].requires_grad_(False)


def peft_config(spec: PeftSection, model: nn.Module, task: str) -> Any:
    """The `peft` config a recipe section implies for this model."""
    from peft import IA3Config, LoraConfig, TaskType

    task_type = TaskType.TOKEN_CLS if task == "token_classification" else TaskType.SEQ_CLS
    targets, feedforward = default_targets(spec, model)
    common = {
        "task_type": task_type,
        "target_modules": targets,
        "modules_to_save": trained_modules(model, spec.modules_to_save),
    }
    if spec.method == "lora":
        return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, **common)
    return IA3Config(feedforward_modules=feedforward, **common)


def add_adapters(model: nn.Module, spec: PeftSection, task: str, frozen_blocks: list[str]) -> Any | None:
    """Apply `peft:` to `model` in place; returns the `PeftModel` wrapper (None when peft is off).

    Afterwards only the adapters and the modules in `trained_modules` have `requires_grad`;
    the adapters inside encoder layers frozen by `freeze.layers` do not train.
    """
    if not spec.enabled:
        return None
    from peft import get_peft_model

    config = peft_config(spec, model, task)
    source = getattr(model, "name_or_path", "") or model.config._name_or_path
    if source:  # where `load_adapted_model` finds the base weights again
        config.base_model_name_or_path = source
    try:
        wrapper = get_peft_model(model, config)
    except ValueError as error:  # peft: "Target modules {...} not found in the base model"
        raise FinetuneError(
            f"peft.target_modules: {error}. This model's linear layers: {', '.join(linear_module_names(model))}"
        ) from None
    freeze_adapters_in_frozen_layers(model, frozen_blocks)
    return wrapper


def adapter_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters peft added (adapter weights and the trained copies of whole modules)."""
    markers = (".lora_", ".ia3_", ".modules_to_save.")
    return [name for name, _ in model.named_parameters() if any(m in name for m in markers)]


def save_adapted(wrapper: Any, folder: Path, how: str, tokenizer: Any) -> None:
    """Save the adapted model: `merged` (a plain transformers model) or `adapter` (adapter + head only)."""
    folder.mkdir(parents=True, exist_ok=True)
    if how == "merged":
        merged = copy.deepcopy(wrapper).merge_and_unload()  # the training model stays intact
        merged.save_pretrained(folder)
    else:
        wrapper.save_pretrained(folder)
        base = wrapper.get_base_model()
        config = copy.deepcopy(base.config)
        config.architectures = [type(base).__name__]
        config.save_pretrained(folder)  # labels, problem type, threshold: what the adapter alone lacks
    tokenizer.save_pretrained(folder)


def is_adapter_folder(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def load_adapted_model(folder: Path, merge: bool = True) -> Any:
    """Load an `adapter` save: the base model named in adapter_config.json, the labels of config.json,
    the adapter and head weights of `folder`; merged for inference unless `merge=False`."""
    from peft import PeftModel
    from transformers import AutoConfig

    from finetune.model.loading import model_class

    folder = Path(folder)
    base_path = json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    if not base_path:
        raise FinetuneError(
            f"{folder / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path)"
        )
    config = AutoConfig.from_pretrained(folder)
    task = (
        "token_classification" if any("TokenClassification" in a for a in config.architectures or []) else ""
    )
    try:
        base = model_class(task).from_pretrained(base_path, config=config, ignore_mismatched_sizes=True)
    except OSError as error:
        raise FinetuneError(
            f"{folder}: could not load the base model '{base_path}' this adapter was trained on: {error}"
        ) from None
    model = PeftModel.from_pretrained(base, folder)
    return model.merge_and_unload() if merge else model


def describe_adapters(wrapper: Any) -> str:
    """One line: method, settings, where the adapters sit, what trains in full, adapter size."""
    config = wrapper.peft_config[wrapper.active_adapter]
    method = type(config).__name__.removesuffix("Config").lower()
    settings = (
        f" (r {config.r}, alpha {config.lora_alpha:g}, dropout {config.lora_dropout:g})"
        if method == "lora"
        else ""
    )
    targets = config.target_modules
    targets = ", ".join(sorted(targets)) if isinstance(targets, (set, list)) else str(targets)
    model = wrapper.get_base_model()
    adapters = [(n, p) for n, p in model.named_parameters() if any(m in n for m in (".lora_", ".ia3_"))]
    count = sum(p.numel() for _, p in adapters if p.requires_grad)
    idle = sum(p.numel() for _, p in adapters if not p.requires_grad)
    where = f"; {idle:,} more in frozen layers stay at their start" if idle else ""
    modules = [name for name, _ in model.named_modules()]
    present = {m for m in config.modules_to_save or [] if any(n == m or n.endswith("." + m) for n in modules)}
    whole = ", ".join(sorted(present))  # peft adds `classifier` and `score` whether or not they exist
    return f"{method}{settings} on {targets}: {count:,} adapter parameters train{where}; trained in full: {whole}"
