"""`freeze:` which parts of the pretrained model do not train."""

import re

from pydantic import field_validator

from .base import Section

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_layer_item(item: int | str) -> list[int]:
    """Expand one `freeze.layers` item: `3` -> [3], `-1` -> [-1], `"0-5"` -> [0, ..., 5]."""
    if isinstance(item, int):
        return [item]
    match = _RANGE.match(item)
    if match is None:
        raise ValueError(f"{item!r} is not a layer index or a range like '0-5'")
    first, last = int(match.group(1)), int(match.group(2))
    if first > last:
        raise ValueError(f"range {item!r} is empty: write it low-high, e.g. '{last}-{first}'")
    return list(range(first, last + 1))


class FreezeSection(Section):
    embeddings: bool = False
    """Freeze the embeddings (word, position, token-type and their LayerNorm)."""

    layers: list[int | str] = []
    """Encoder layers to freeze: indices (0 = closest to the input; negative counts from the top)
    and ranges like `"0-5"`. Out-of-range indices for the loaded model are an error."""

    @field_validator("layers")
    @classmethod
    def _valid_items(cls, items: list[int | str]) -> list[int | str]:
        for item in items:
            parse_layer_item(item)
        return items
