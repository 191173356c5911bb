"""Recipes: the schema (one module per section) and the loader (YAML, extends, overrides, errors).

This package imports nothing else of finetune's except the error type: the recipe knows nothing
of the trainer. Everything else reads a validated `Recipe`.
"""

from .loading import find_recipe, load_recipe, parse_yaml, shipped_recipes_dir, validate_recipe
from .schema import Recipe

__all__ = ["Recipe", "find_recipe", "load_recipe", "parse_yaml", "shipped_recipes_dir", "validate_recipe"]
