"""finetune: fine-tune Hugging Face Transformer encoders from YAML recipe files.

The package is laid out one folder per concern, named after the recipe section it serves
(see docs/architecture.md).
Importing the package is cheap: heavy libraries (torch, transformers) are imported only by the
modules that need them, so `finetune --help` and recipe validation stay fast.
"""

__version__ = "0.1.0"
