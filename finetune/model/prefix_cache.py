"""Frozen-prefix cache: compute the frozen bottom of the network once per example, then reuse it.

When the embeddings and the bottom k encoder layers are frozen and run without dropout, their
output for an example never changes during training, yet every epoch recomputes it. The cache
keeps each example's hidden states after layer k-1 (only its real tokens, so any dynamic padding
can reuse them) and, from the second time an example is seen, the model runs only the layers
above k. This is the activation caching of AutoFreeze (Liu et al., 2021, "AutoFreeze: Automatically
Freezing Model Blocks to Accelerate Fine-tuning") and of Egeria (Wang et al., 2023).

How it plugs in, without changing the model's modules or parameter names: a forward pre-hook on
the base model (`model.bert`) looks the batch up and computes the missing examples with the
prefix only; the embeddings then return the cached hidden states and the frozen layers pass them
through. Examples are keyed by their token ids (and token types), so the same text in the
training and validation sets is computed once, and no index has to travel with the batch.

Invalidation: before every forward pass the cache checks which bottom blocks are frozen
(`requires_grad`) and whether any of their weights changed: tensor version counters and storage
(e.g. `load_state_dict`), and a fingerprint of the values (row sums and norms), which also sees
writes through `p.data` that leave the version counter alone (`weights_fingerprint`). When gradual unfreezing releases a cached layer, the cache is dropped and
rebuilt for the shorter prefix that is still frozen; restoring best weights drops it too.

The prefix always runs in eval mode (no dropout): cached outputs must be deterministic. Recipes
therefore need `freeze.eval_mode: true` with `training.prefix_cache`, and training with and without
the cache is the same computation (tests/model/test_prefix_cache.py checks both, to float tolerance).

Supported: BERT-layout encoders (BERT, MiniLM, RoBERTa, XLM-R, CamemBERT), right-padded inputs.
Other architectures get a clear error; a batch the cache cannot serve (left padding, explicit
`position_ids` or `inputs_embeds`) simply runs the whole model.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from finetune.errors import FinetuneError

if TYPE_CHECKING:
    from torch import nn

    from finetune.model.anatomy import Anatomy

# Encoders whose base model calls `embeddings(...)` then each layer as `layer(hidden, mask, ...) -> hidden`.
SUPPORTED = ("bert", "roberta", "xlm-roberta", "camembert")


class ActivationStore:
    """Per-example tensors by key: in memory up to a byte budget, then appended to one file on disk."""

    def __init__(self, memory_bytes: int, folder: str | Path | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.folder = Path(folder) if folder is not None else None
        self.memory: dict[bytes, torch.Tensor] = {}
        self.memory_used = 0
        self.disk: dict[bytes, tuple[int, tuple[int, ...], torch.dtype]] = {}
        self.disk_used = 0
        self._file: Any = None

    def __len__(self) -> int:
        return len(self.memory) + len(self.disk)

    def get(self, key: bytes) -> torch.Tensor | None:
        tensor = self.memory.get(key)
        if tensor is not None or key not in self.disk:
            return tensor
        offset, shape, dtype = self.disk[key]
        count = int(torch.Size(shape).numel()) * torch.empty(0, dtype=dtype).element_size()
        data = bytearray(os.pread(self._file.fileno(), count, offset))
        return torch.frombuffer(data, dtype=dtype).view(shape)

    def put(self, key: bytes, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.memory_used + size <= self.memory_bytes:
            self.memory[key] = tensor
            self.memory_used += size
            return
        if self._file is None:
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
            # deleted when closed (clear) or at exit; kept open for the whole run
            self._file = tempfile.TemporaryFile(dir=self.folder, prefix="prefix-cache-")  # noqa: SIM115
        raw = tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        offset = self.disk_used
        os.pwrite(self._file.fileno(), raw, offset)
        self.disk[key] = (offset, tuple(tensor.shape), tensor.dtype)
        self.disk_used += len(raw)

    def clear(self) -> None:
        self.memory.clear()
        self.disk.clear()
        self.memory_used = self.disk_used = 0
        if self._file is not None:
            self._file.close()
            self._file = None


class PrefixCache:
    """Serve the frozen prefix (embeddings + bottom frozen layers) of a BERT-layout model from a cache.

    `install` patches the embeddings' and layers' `forward` on the instances (parameter names and
    the module tree stay as they were); `remove` undoes it. Counters `hits`, `misses` and
    `invalidations` say how it went.
    """

    def __init__(self, model: nn.Module, anatomy: Anatomy, store: ActivationStore, verbose: bool = True):
        if anatomy.model_type not in SUPPORTED or len(anatomy.embeddings) != 1:
            raise FinetuneError(
                f"training.prefix_cache: not available for '{anatomy.model_type}' models (supported: "
                f"{', '.join(SUPPORTED)}); set training.prefix_cache: false"
            )
        self.model = model
        self.base = model.base_model
        self.embeddings = anatomy.embeddings[0]
        self.layers = list(anatomy.layers)
        self.store = store
        self.verbose = verbose
        self._bind = inspect.signature(self.base.forward).bind
        self.mode = "off"  # "serve": the forward pass uses `pending`; "compute": running the prefix only
        self.pending: torch.Tensor | None = None
        self.active, self.depth = False, 0
        self.signature: tuple | None = None
        self.fingerprint: torch.Tensor | None = None
        self.hits = self.misses = self.invalidations = 0
        self._handles: list[Any] = []

    # ---- installation -------------------------------------------------------------------------

    def install(self) -> PrefixCache:
        self.embeddings.forward = self._wrap_embeddings(self.embeddings.forward)
        for index, layer in enumerate(self.layers):
            layer.forward = self._wrap_layer(index, layer.forward)
        self._handles = [
            self.base.register_forward_pre_hook(self._before, with_kwargs=True),
            self.base.register_forward_hook(self._after),
        ]
        self.refresh()
        return self

    def remove(self) -> None:
        for module in (self.embeddings, *self.layers):
            module.__dict__.pop("forward", None)  # back to the class's forward
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.store.clear()

    def _wrap_embeddings(self, original: Callable) -> Callable:
        def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
            if self.mode == "serve":
                return self.pending
            return original(*args, **kwargs)

        return forward

    def _wrap_layer(self, index: int, original: Callable) -> Callable:
        def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            cached = self.mode == "serve" and index < self.depth
            above_prefix = self.mode == "compute" and index >= self.depth
            if cached or above_prefix:
                return hidden_states
            return original(hidden_states, *args, **kwargs)

        return forward

    # ---- what is cached -----------------------------------------------------------------------

    def prefix_modules(self) -> list[nn.Module]:
        return [self.embeddings, *self.layers[: self.depth]]

    def frozen_prefix(self) -> tuple[bool, int]:
        """(embeddings frozen, number of frozen layers from the bottom) as the model stands now."""
        if any(p.requires_grad for p in self.embeddings.parameters()):
            return False, 0
        depth = 0
        for layer in self.layers:
            if any(p.requires_grad for p in layer.parameters()):
                break
            depth += 1
        return True, depth

    def refresh(self) -> bool:
        """Re-check what is frozen and whether frozen weights changed; drop the cache if so.

        Returns whether the cache can serve (the embeddings are frozen)."""
        active, depth = self.frozen_prefix()
        modules = [self.embeddings, *self.layers[:depth]] if active else []
        parameters = [p for m in modules for p in m.parameters()]
        signature = (active, depth, tuple((p._version, p.data_ptr()) for p in parameters))
        fingerprint = weights_fingerprint(parameters)
        if signature != self.signature or not same_fingerprint(fingerprint, self.fingerprint):
            if self.signature is not None and len(self.store):
                self.invalidations += 1
                self._say(
                    f"prefix cache: dropped {len(self.store):,} cached examples ({self.describe(active, depth)} now)"
                )
            self.store.clear()
            self.active, self.depth, self.signature = active, depth, signature
            self.fingerprint = fingerprint
        return active

    def describe(self, active: bool | None = None, depth: int | None = None) -> str:
        active = self.active if active is None else active
        depth = self.depth if depth is None else depth
        if not active:
            return "nothing frozen at the bottom: cache off"
        layers = f" + layers 0-{depth - 1}" if depth > 1 else (" + layer 0" if depth == 1 else "")
        return f"caching embeddings{layers}"

    def summary(self) -> dict[str, Any]:
        """What `results.json` records about the cache."""
        return {
            "cached": self.describe(),
            "hits": self.hits,
            "misses": self.misses,
            "invalidations": self.invalidations,
            "examples": len(self.store),
            "memory_mb": round(self.store.memory_used / 2**20, 1),
            "disk_mb": round(self.store.disk_used / 2**20, 1),
        }

    # ---- the hooks ----------------------------------------------------------------------------

    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.mode == "compute":  # our own call that fills the cache
            return
        self.mode, self.pending = "off", None  # a previous pass may have failed half-way
        if not self.refresh():
            return
        call = self._bind(*args, **kwargs).arguments
        input_ids = call.get("input_ids")
        unsupported = ("position_ids", "inputs_embeds", "past_key_values", "encoder_hidden_states")
        if input_ids is None or any(call.get(name) is not None for name in unsupported):
            return
        mask = call.get("attention_mask")
        mask = torch.ones_like(input_ids) if mask is None else mask
        if not right_padded(mask):
            return
        self.pending = self.hidden_states(input_ids, mask, call.get("token_type_ids"))
        self.mode = "serve"

    def _after(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.mode == "serve":
            self.mode, self.pending = "off", None

    # ---- lookup and compute -------------------------------------------------------------------

    def hidden_states(
        self, input_ids: torch.Tensor, mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """The prefix's output for a padded batch: cached rows, missing rows computed and stored."""
        lengths = mask.sum(dim=1).tolist()
        keys = example_keys(input_ids, token_type_ids, lengths)
        rows = [self.store.get(key) for key in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(rows) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self.compute(
                input_ids, mask, token_type_ids, missing, max(lengths[i] for i in missing)
            )
            for j, i in enumerate(missing):
                rows[i] = computed[j, : lengths[i]].clone()
                self.store.put(keys[i], rows[i])
        device = input_ids.device
        out = torch.zeros((*input_ids.shape, rows[0].shape[-1]), dtype=rows[0].dtype, device=device)
        out[mask.bool()] = torch.cat([row.to(device) for row in rows])
        return out

    def compute(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        rows: list[int],
        length: int,
    ) -> torch.Tensor:
        """Run only the prefix (in eval mode, without gradients) on some rows of a batch."""
        select = torch.tensor(rows, device=input_ids.device)
        inputs = {"input_ids": input_ids[select, :length], "attention_mask": mask[select, :length]}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids[select, :length]
        modules = self.prefix_modules()
        modes = [m.training for m in modules]
        self.mode = "compute"
        try:
            for m in modules:
                m.eval()
            with torch.no_grad():
                return self.base(**inputs)[0]
        finally:
            for m, training in zip(modules, modes):
                m.train(training)
            self.mode = "off"

    def _say(self, line: str) -> None:
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(line)


def weights_fingerprint(parameters: list[torch.Tensor]) -> torch.Tensor:
    """Each parameter's row sums and row norms (float32), in one small tensor on the weights' device.

    Writes through `p.data` (`p.data.copy_(...)` by EMA/SWA callbacks, some peft and DeepSpeed
    paths) keep the version counter and the storage, so only the values can tell: any realistic
    write changes a row's sum or norm. Cost: one pass over the cached weights per forward pass
    (0.6 ms for the tiny test BERT's prefix, 23 ms for a BERT-base-size prefix of embeddings + 6
    layers, on one CPU thread; a 32x128 forward pass takes 15 ms and 8 s there)."""
    parts = []
    for parameter in parameters:
        weights = parameter.detach()
        rows = weights.reshape(-1, weights.shape[-1]) if weights.dim() else weights.reshape(1, 1)
        parts.append(rows.sum(dim=1, dtype=torch.float32))
        parts.append(torch.linalg.vector_norm(rows, dim=1, dtype=torch.float32))
    return torch.cat(parts) if parts else torch.zeros(0)


def same_fingerprint(new: torch.Tensor, old: torch.Tensor | None) -> bool:
    """Exactly equal (NaN equal to NaN, so NaN weights do not drop the cache at every step)."""
    if old is None or new.shape != old.shape or new.device != old.device:
        return False
    return bool(torch.allclose(new, old, rtol=0.0, atol=0.0, equal_nan=True))


def right_padded(mask: torch.Tensor) -> bool:
    """Whether every row's real tokens come first (ones, then zeros)."""
    if mask.shape[1] < 2:
        return True
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def autocast_tag(device: torch.device) -> bytes:
    """The autocast dtype in force (outputs under bf16 autocast differ from fp32 ones)."""
    if not torch.is_autocast_enabled(device.type):
        return b"fp32|"
    return str(torch.get_autocast_dtype(device.type)).encode() + b"|"


def example_keys(
    input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, lengths: list[int]
) -> list[bytes]:
    """A key per row from its real token ids (and token types, and the autocast dtype in force):
    equal inputs computed the same way share a cache entry."""
    tag = autocast_tag(input_ids.device)
    ids = input_ids.detach().to("cpu").numpy()
    types = token_type_ids.detach().to("cpu").numpy() if token_type_ids is not None else None
    keys = []
    for i, n in enumerate(lengths):
        key = tag + ids[i, :n].tobytes()
        if types is not None:
            key += b"|" + types[i, :n].tobytes()
        keys.append(key)
    return keys


def install_prefix_cache(
    model: nn.Module, memory_mb: int, folder: str | Path | None = None, verbose: bool = True
) -> PrefixCache:
    """Put a prefix cache on `model` (frozen embeddings required; the bottom frozen layers are cached)."""
    from finetune.model.anatomy import model_anatomy

    try:
        anatomy = model_anatomy(model)
    except FinetuneError as error:
        raise FinetuneError(f"training.prefix_cache: {error}") from None
    cache = PrefixCache(model, anatomy, ActivationStore(memory_mb * 2**20, folder), verbose)
    active, depth = cache.frozen_prefix()
    if not active:
        raise FinetuneError(
            "training.prefix_cache: the embeddings are not frozen, so there is no frozen prefix to cache; "
            "freeze the embeddings and the bottom layers (freeze.embeddings: true, freeze.layers: ['0-2']) "
            "or set training.prefix_cache: false"
        )
    return cache.install()
