"""Searching for a recipe: lr-find, sweep, cross-validation (`sweep:`)."""
