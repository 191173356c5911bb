"""Model anatomy: where the embeddings, encoder layers, pooler and task head of a model are.

Every layer-aware recipe feature (freezing by layer, gradual unfreezing, layer-wise learning
rates, re-initialisation, `finetune explain`) asks this module, never a model class directly,
so supporting a new architecture means adding one row to `LAYOUTS`.

Blocks are listed bottom-up: `embeddings`, `layer.0` (closest to the input) ... `layer.{N-1}`,
`pooler` (when the model has one), `head` (everything the task adds on top of the encoder).
Every parameter belongs to exactly one block.

ALBERT shares one set of layer weights across all its repetitions (Lan et al., 2020): its blocks
`layer.i` are the distinct layer *groups* (one, in every released checkpoint), each applied
`repeats` times. Such a layer trains or is frozen as a whole; one repetition cannot be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune.errors import FinetuneError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Layout:
    """Where one architecture keeps its parts. Paths are module paths inside the full model;
    `{base}` stands for the model's `base_model_prefix` (`bert`, `roberta`, ...)."""

    embeddings: tuple[str, ...]
    layers: str
    pooler: str | None = None
    first: tuple[str, ...] = ()  # applied right after the first layer (DeBERTa-v2's conv): layer 0's block
    final: tuple[str, ...] = ()  # after the last layer (a pre-LN final norm): part of the top layer's block
    shared_layers: bool = False  # ALBERT: one set of layer weights applied num_hidden_layers times
    notes: str = ""


_BERT_LIKE = Layout(embeddings=("{base}.embeddings",), layers="{base}.encoder.layer", pooler="{base}.pooler")

LAYOUTS: dict[str, Layout] = {
    "bert": _BERT_LIKE,  # MiniLM (the default) is a BERT
    "roberta": _BERT_LIKE,  # RobertaForSequenceClassification has no pooler: its dense layer is in the head
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": Layout(
        embeddings=("{base}.embeddings", "{base}.embeddings_project"), layers="{base}.encoder.layer"
    ),
    "distilbert": Layout(embeddings=("{base}.embeddings",), layers="{base}.transformer.layer"),
    "albert": Layout(
        embeddings=("{base}.embeddings", "{base}.encoder.embedding_hidden_mapping_in"),
        layers="{base}.encoder.albert_layer_groups",
        pooler="{base}.pooler",
        shared_layers=True,
        notes="ALBERT applies one shared layer num_hidden_layers times: the layer can be frozen or "
        "trained as a whole, but not one of its repetitions.",
    ),
    "deberta-v2": Layout(  # DeBERTa-v3 checkpoints are deberta-v2 models
        embeddings=("{base}.embeddings", "{base}.encoder.rel_embeddings", "{base}.encoder.LayerNorm"),
        layers="{base}.encoder.layer",
        pooler="pooler",
        first=("{base}.encoder.conv",),  # xlarge/xxlarge (conv_kernel_size > 0): mixes layer 0's output
    ),
    "deberta": Layout(
        embeddings=("{base}.embeddings", "{base}.encoder.rel_embeddings"),
        layers="{base}.encoder.layer",
        pooler="pooler",
    ),
    "mpnet": Layout(
        embeddings=("{base}.embeddings", "{base}.encoder.relative_attention_bias"),
        layers="{base}.encoder.layer",
        pooler="{base}.pooler",
    ),
    "modernbert": Layout(
        embeddings=("{base}.embeddings",),
        layers="{base}.layers",
        pooler="head",  # ModernBertPredictionHead: dense + norm over the pooled output, pretrained
        final=("{base}.final_norm",),
    ),
}


@dataclass
class Anatomy:
    """The parts of one loaded model, bottom-up, and which parameter belongs to which block."""

    model_type: str
    layout: Layout
    embeddings: list[nn.Module]
    layers: list[nn.Module]
    pooler: nn.Module | None
    head: list[nn.Module]
    blocks: dict[str, list[str]] = field(default_factory=dict)  # block -> parameter names, in order
    first: list[nn.Module] = field(default_factory=list)
    final: list[nn.Module] = field(default_factory=list)
    repeats: int = 1  # how many times each layer is applied (ALBERT: num_hidden_layers / groups)

    @property
    def num_layers(self) -> int:
        """Distinct encoder layers (for ALBERT: distinct layer groups, usually 1)."""
        return len(self.layers)

    @property
    def layer_blocks(self) -> list[str]:
        return [f"layer.{i}" for i in range(self.num_layers)]

    def top_down(self) -> list[str]:
        """Blocks from the head down to the embeddings: the order of gradual unfreezing and of LR decay."""
        return list(reversed(self.blocks))

    def block_of(self, parameter_name: str) -> str:
        for block, names in self.blocks.items():
            if parameter_name in names:
                return block
        raise KeyError(parameter_name)

    def block_modules(self, block: str) -> list[nn.Module]:
        if block == "embeddings":
            return list(self.embeddings)
        if block == "pooler":
            return [self.pooler] if self.pooler is not None else []
        if block == "head":
            return list(self.head)
        index = int(block.split(".")[1])
        extra = (self.first if index == 0 else []) + (self.final if index == self.num_layers - 1 else [])
        return [self.layers[index], *extra]

    def describe_layers(self) -> str:
        """`12 encoder layers`, or ALBERT's `1 shared layer applied 12 times`, for messages."""
        if self.layout.shared_layers:
            noun = "shared layer" if self.num_layers == 1 else "shared layer groups"
            return (
                f"{self.num_layers} {noun} applied {self.num_layers * self.repeats} times "
                f"(a repetition of a shared layer cannot be frozen, re-initialised or given its own "
                f"learning rate alone: use indices 0..{self.num_layers - 1}, which mean all repetitions)"
            )
        return f"{self.num_layers} encoder layers"


def supported_architectures() -> list[str]:
    return sorted(LAYOUTS)


def _module(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def unknown_architecture_error(model_type: str | None) -> FinetuneError:
    return FinetuneError(
        f"model: architecture '{model_type}' is not one finetune knows the layers of "
        f"(supported: {', '.join(supported_architectures())}). Freezing by block or layer, layer-wise "
        f"learning rates, gradual unfreezing and re-initialisation need that; freeze by parameter-name "
        f"regex (`freeze.patterns`, or `freeze.train_only.patterns`) or by module class "
        f"(`freeze.modules`) instead, which work for any model."
    )


def model_anatomy(model: nn.Module) -> Anatomy:
    """Find the embeddings, encoder layers, pooler and head of a Hugging Face encoder model."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    layout = LAYOUTS.get(model_type or "")
    if layout is None:
        raise unknown_architecture_error(model_type)
    base = model.base_model_prefix
    resolve = lambda path: path.format(base=base)  # noqa: E731
    embeddings = [m for p in layout.embeddings if (m := _module(model, resolve(p))) is not None]
    layers_module = _module(model, resolve(layout.layers))
    if not embeddings or layers_module is None or len(layers_module) == 0:
        raise FinetuneError(
            f"model: a '{model_type}' model without the expected embeddings/layers "
            f"({', '.join(layout.embeddings)}; {layout.layers}); this model class is not supported"
        )
    pooler = _module(model, resolve(layout.pooler)) if layout.pooler else None
    present = lambda paths: [resolve(p) for p in paths if _module(model, resolve(p)) is not None]  # noqa: E731
    first_paths, final_paths = present(layout.first), present(layout.final)
    top = len(layers_module) - 1
    prefixes = {
        "embeddings": [resolve(p) for p in layout.embeddings],
        **{f"layer.{i}": [f"{resolve(layout.layers)}.{i}"] for i in range(top + 1)},
    }
    prefixes["layer.0"] += first_paths
    prefixes[f"layer.{top}"] += final_paths
    if pooler is not None:
        prefixes["pooler"] = [resolve(layout.pooler)]
    blocks = _assign_parameters(model, prefixes)
    head_owners = dict.fromkeys(name.rpartition(".")[0] for name in blocks["head"])
    head = [model.get_submodule(owner) for owner in head_owners]
    repeats = max(1, getattr(model.config, "num_hidden_layers", 1) // len(layers_module))
    return Anatomy(
        model_type=model_type,
        layout=layout,
        embeddings=embeddings,
        layers=list(layers_module),
        pooler=pooler,
        head=head,
        blocks=blocks,
        first=[model.get_submodule(p) for p in first_paths],
        final=[model.get_submodule(p) for p in final_paths],
        repeats=repeats if layout.shared_layers else 1,
    )


def known_anatomy(model: nn.Module) -> Anatomy | None:
    """The anatomy of a model finetune knows the layers of; None for any other model."""
    if getattr(getattr(model, "config", None), "model_type", None) not in LAYOUTS:
        return None
    return model_anatomy(model)


def _assign_parameters(model: nn.Module, prefixes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Put every parameter in exactly one block; what no prefix claims is the task head."""
    blocks: dict[str, list[str]] = {block: [] for block in prefixes}
    blocks["head"] = []
    for name, _ in model.named_parameters():
        owner = next(
            (b for b, ps in prefixes.items() if any(name == p or name.startswith(p + ".") for p in ps)),
            "head",
        )
        blocks[owner].append(name)
    return blocks
