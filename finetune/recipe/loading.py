"""Reading recipes: YAML files, `extends` chains, command-line overrides, readable errors.

A recipe is resolved in three steps, each of which can fail with a message that names the file
and the key path:

1. read the YAML file (a mapping at the top level),
2. follow `extends:` to base recipes (a path relative to the file, or the name of a shipped
   recipe) and deep-merge them, base first,
3. apply `section.key=value` overrides from the command line,

and then the merged data is validated once by the pydantic schema, which reports every
problem at the same time.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from finetune.errors import RecipeError

from .schema import Recipe

COMMAND_LINE = "the command line"
MAX_ALIAS_EXPANSION = 10_000  # values that aliases (*name) may add; a recipe needs a handful


class _AliasBomb(Exception):
    """A document whose aliases expand to more than `MAX_ALIAS_EXPANSION` extra values."""


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads `2e-5` as a float (YAML 1.1 needs `2.0e-5`), and refuses
    documents whose aliases expand without bound ("billion laughs", an alias inside its anchor)."""

    def construct_document(self, node: yaml.Node) -> Any:
        sizes: dict[int, float] = {}
        if _expanded_size(node, sizes) - len(sizes) > MAX_ALIAS_EXPANSION:
            raise _AliasBomb
        return super().construct_document(node)


def _expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """Nodes under `node` with every alias written out; `sizes` memoizes (and counts distinct nodes)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = math.inf  # reached again before it is sized: an alias inside its own anchor
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
    sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; a syntax error names the source and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except _AliasBomb:
        raise RecipeError(
            f"{source}: YAML aliases (*name) expand to more than {MAX_ALIAS_EXPANSION:,} extra values "
            "(an alias bomb, or an alias inside its own anchor); write the values out, or share "
            "settings with `extends:`."
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}" if mark is not None else source
        problem = getattr(error, "problem", None) or str(error)
        raise RecipeError(f"{where}: not valid YAML: {problem}") from None


def shipped_recipes_dir() -> Path:
    """The `recipes/` folder that ships with finetune (repo checkout or installed wheel)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_recipes"
    return installed if installed.is_dir() else package.parent / "recipes"


def find_recipe(reference: str, relative_to: Path | None = None, extending: Path | None = None) -> Path:
    """Find a recipe by path (relative to `relative_to`, then the working directory) or shipped name.

    A bare name (`extends: base`) is first a sibling `base.yaml` of the recipe that names it, so a
    folder of recipes can have its own base; only then a shipped recipe. `extending` (the recipe
    whose `extends` this is) is never its own base: `extends: base` in a user's base.yaml is the
    shipped one.
    """
    candidates = []
    ref = Path(reference)
    name = reference if reference.endswith((".yaml", ".yml")) else f"{reference}.yaml"
    if relative_to is not None and not ref.is_absolute():
        candidates.append(relative_to / ref)
        if name != reference:
            candidates.append(relative_to / name)
    candidates.append(ref)
    candidates.append(shipped_recipes_dir() / name)
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() != extending:
            return candidate.resolve()
    if any(candidate.is_file() for candidate in candidates):  # only `extending` itself
        raise RecipeError(
            f"{extending}: `extends: {reference}` names this recipe itself; a recipe cannot extend "
            "itself. Name another recipe, or remove `extends`."
        )
    shipped = sorted(p.stem for p in shipped_recipes_dir().glob("*.yaml"))
    suggestion = difflib.get_close_matches(Path(reference).stem, shipped, n=1)
    hint = f" Did you mean '{suggestion[0]}'?" if suggestion else ""
    raise RecipeError(
        f"recipe '{reference}' not found (looked in: {', '.join(str(c) for c in candidates)}).{hint} "
        f"Shipped recipes: {', '.join(shipped)}."
    )


def _read_mapping(path: Path) -> dict:
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections (got {type(data).__name__})")
    return data


def deep_merge(base: dict, override: dict, source: str, provenance: dict[str, str], prefix: str = "") -> dict:
    """Merge `override` into a copy of `base`: mappings merge key by key, anything else replaces.

    `provenance` records, for every key path written, which file (or the command line) set it.
    """
    merged = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, source, provenance, f"{path}.")
        else:
            merged[key] = value
            _record(value, path, source, provenance)
    return merged


def _record(value: Any, path: str, source: str, provenance: dict[str, str]) -> None:
    provenance[path] = source
    if isinstance(value, dict):
        for key, inner in value.items():
            _record(inner, f"{path}.{key}", source, provenance)


def read_recipe_data(path: Path, provenance: dict[str, str], chain: tuple[Path, ...] = ()) -> dict:
    """Read a recipe file and everything it extends, merged base-first; detect cycles."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise RecipeError(f"`extends` forms a cycle: {cycle}; remove `extends` from one of them.")
    data = _read_mapping(path)
    parent = data.pop("extends", None)
    if parent is None:
        return deep_merge({}, data, str(path), provenance)
    if not isinstance(parent, str):
        raise RecipeError(f"{path}: `extends` must be one recipe path or name, got {parent!r}")
    base_path = find_recipe(parent, relative_to=path.parent, extending=path)
    base = read_recipe_data(base_path, provenance, (*chain, path))
    return deep_merge(base, data, str(path), provenance)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `optimizer.lr=3e-5` into (["optimizer", "lr"], 3e-05); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override '{text}' is not of the form section.key=value (e.g. optimizer.lr=3e-5)")
    value = parse_yaml(raw, f"override '{text}'") if raw.strip() else None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str], provenance: dict[str, str]) -> dict:
    """Apply command-line overrides, each as a one-key deep merge."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        data = deep_merge(data, nested, COMMAND_LINE, provenance)
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, merge, override and validate a recipe; every problem is reported in one RecipeError."""
    recipe_path = find_recipe(str(path))
    provenance: dict[str, str] = {}
    data = read_recipe_data(recipe_path, provenance)
    data = apply_overrides(data, overrides or [], provenance)
    data.setdefault("name", recipe_path.stem)
    return validate_recipe(data, provenance, str(recipe_path))


def validate_recipe(data: dict, provenance: dict[str, str] | None = None, source: str = "recipe") -> Recipe:
    """Validate merged recipe data against the schema, turning pydantic errors into one message."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(format_validation_error(error, provenance or {}, source)) from None


# ---------------------------------------------------------------------------------------------
# Error messages


def format_validation_error(error: ValidationError, provenance: dict[str, str], source: str) -> str:
    """One readable message for all problems: where each is (file, key path) and how to fix it."""
    lines: list[str] = []
    seen: dict[str, int] = {}
    for item in error.errors(include_url=False):
        path, model = _field_path(item["loc"], item["type"] == "extra_forbidden")
        where = _source_of(path, provenance, source)
        message = _explain(item, path, model)
        if not path:  # a check across sections: its message names the keys itself
            lines.extend(f"{where}: {line}" for line in message.split("\n"))
            continue
        key = f"{where}: {path}"
        if key in seen:  # several alternatives of one union failed: keep one line per key
            lines[seen[key]] += f"; or {message}"
            continue
        seen[key] = len(lines)
        lines.append(f"{key}: {message}")
    count = len(lines)
    header = f"recipe is invalid ({count} problem{'s' if count > 1 else ''}):"
    return "\n".join([header, *(f"  - {line}" for line in lines)])


def _field_path(loc: tuple, unknown_key: bool) -> tuple[str, type[BaseModel] | None]:
    """Keep the part of a pydantic `loc` that names recipe keys; return the model owning the last key.

    Pydantic adds union-member tags (`int`, `literal['epoch']`) to locations; they are not keys and
    are dropped. For an unknown key, the last element is the key itself.
    """
    parts: list[str] = []
    model: type[BaseModel] | None = Recipe
    owner: type[BaseModel] | None = Recipe
    for position, element in enumerate(loc):
        if isinstance(element, int) and parts:
            parts[-1] += f"[{element}]"
        elif model is not None and element in model.model_fields:
            owner = model
            parts.append(str(element))
            model = inner_model(model.model_fields[element].annotation)
        elif unknown_key and position == len(loc) - 1:
            owner = model
            parts.append(str(element))
        else:
            break
    return ".".join(parts), owner


def inner_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation like `Model`, `Model | None` or `list[Model]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = inner_model(arg)
        if found is not None:
            return found
    return None


def _source_of(path: str, provenance: dict[str, str], default: str) -> str:
    """The file (or the command line) that set `path` or its nearest parent."""
    probe = re.sub(r"\[\d+\]", "", path)
    while probe:
        if probe in provenance:
            return provenance[probe]
        probe = probe.rpartition(".")[0]
    return default


def _explain(item: dict, path: str, model: type[BaseModel] | None) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        key = path.rpartition(".")[2]
        return _unknown_key_message(key, model)
    given = item.get("input")
    message = item["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "missing":
        return "required key is missing"
    if isinstance(given, dict) or not path:
        return message
    return f"{message} (got {given!r})"


def _unknown_key_message(key: str, model: type[BaseModel] | None) -> str:
    known = sorted(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean '{close[0]}'?"
    else:
        home = _section_with_key(key)
        hint = f"'{key}' belongs in `{home}`." if home else f"valid keys here: {', '.join(known)}."
    return f"unknown key '{key}': {hint}"


def _section_with_key(key: str) -> str | None:
    """The section that has a key of this name, for keys written under the wrong section."""
    for name, field in Recipe.model_fields.items():
        section = inner_model(field.annotation)
        if section is not None and key in section.model_fields:
            return name
    return None
