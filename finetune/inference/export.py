"""`finetune export RUN --format onnx`: a self-contained ONNX folder, checked against PyTorch.

The run's model is loaded as `predict` loads it (adapters merged), wrapped so that its one output
is `logits`, and exported with torch.onnx's exporter (torch.export underneath) with a dynamic
batch axis and a dynamic sequence axis on every input. The output folder holds all a user needs
to run it with onnxruntime alone:

    model.onnx          fp32 graph: inputs input_ids, attention_mask[, token_type_ids] -> logits
    model.int8.onnx     with --quantize int8: onnxruntime's dynamic int8 quantization of it
    config.json         the model's config: label names (id2label), problem type
    tokenizer files     tokenizer.json, tokenizer_config.json, ... (AutoTokenizer loads the folder)
    export.json         task, label names, threshold, max_length, inputs, opset, versions
    parity.json         the parity check below, for each exported file

Parity (finetune/inference/parity.py): the run's validation texts (carved from train exactly as
training did when the recipe held them out), or `--data FILE`, go through PyTorch and onnxruntime;
the export fails with a FinetuneError when fp32 logits differ beyond `--tolerance` or int8
predictions agree less than `--min-agreement`. The files stay, with parity.json saying why.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError
from finetune.inference.parity import DEFAULT_MIN_AGREEMENT, DEFAULT_TOLERANCE, Parity, compare, onnx_infer
from finetune.inference.predict import MODEL_INPUTS, encode, infer, load_predictor, locate_model, read_inputs
from finetune.runs.folders import RECIPE_FILE
from finetune.runs.outputs import same_path

if TYPE_CHECKING:
    from datasets import Dataset

    from finetune.inference.predict import Predictor

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
WRITTEN = (FP32_FILE, INT8_FILE, "parity.json", "export.json")  # cleared first by --overwrite
DEFAULT_MAX_TEXTS = 1000
EXAMPLE_TEXTS = ["a short text", "a somewhat longer text, so that the two differ in length"]


def require_onnx() -> None:
    """Export needs the optional `onnx` extra: say how to install it rather than fail on an import."""
    missing = [
        name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise FinetuneError(
            f"finetune export --format onnx needs {', '.join(missing)}, which are not installed: "
            "pip install 'finetune[onnx]'"
        )


def default_output_dir(source: Path) -> Path:
    """`<run>/export-onnx` for run folders; `<model folder name>-onnx` here for model folders."""
    if (source / RECIPE_FILE).is_file():
        return source / "export-onnx"
    return Path.cwd() / f"{source.resolve().name}-onnx"


def check_output_dir(folder: Path, source: Path, model_dir: Path, overwrite: bool) -> None:
    """Never into the model being exported; into a non-empty folder only with `overwrite`."""
    for protected in (source, model_dir):
        if same_path(folder, protected):
            raise FinetuneError(
                f"--output {folder} is the folder being exported ({protected}); export writes config.json "
                "and tokenizer files there, over the model's own, even with --overwrite. Choose another --output."
            )
    if folder.exists() and not folder.is_dir():
        raise FinetuneError(f"--output {folder} is a file; give a folder to write the export to.")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FinetuneError(
            f"{folder} already exists and is not empty; pass --overwrite to replace the export there, "
            "or choose another folder with --output."
        )


def parity_texts(
    predictor: Predictor, source: Path, data: Path | None, max_texts: int
) -> tuple[Dataset, str]:
    """The texts parity is checked on: `data`, else the run's validation split as training made it."""
    if data is not None:
        texts, where = read_inputs(predictor, data), str(data)
    else:
        texts, where = _validation_split(source)
    if len(texts) == 0:
        raise FinetuneError(f"{where}: no texts to check the export on; give a file with texts (--data)")
    if max_texts and len(texts) > max_texts:
        texts, where = texts.select(range(max_texts)), f"the first {max_texts:,} of {where}"
    return texts.remove_columns([c for c in texts.column_names if c.startswith("label")]), where


def _validation_split(source: Path) -> tuple[Dataset, str]:
    """The run's validation split, loaded (and held out of train) by the code training used."""
    from finetune.data.task_data import load_task_data
    from finetune.recipe import load_recipe

    if not (source / RECIPE_FILE).is_file():
        raise FinetuneError(
            f"{source}: a model folder has no recipe to find validation texts in; pass --data FILE "
            "(a file of texts, read like `finetune predict --input`) to check the export on"
        )
    recipe = load_recipe(source / RECIPE_FILE)
    try:
        data = load_task_data(recipe.data, recipe.model.task, recipe.training.seed)
    except FinetuneError as error:
        raise FinetuneError(
            f"{source}: export checks the ONNX model on the run's validation texts, which could not be "
            f"loaded ({error}). Run it from the folder training ran in, or pass --data FILE."
        ) from None
    return data.validation, f"the validation split of {source} ({data.sources.get('validation', '?')})"


def model_inputs(model: Any, tokenizer: Any) -> list[str]:
    """The inputs the graph takes: those the tokenizer makes and the model's forward accepts, in order."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    made = set(tokenizer.model_input_names)
    return [name for name in MODEL_INPUTS if name in made and name in accepted]


def logits_module(model: Any, names: list[str]) -> Any:
    """The model as a module of positional tensors -> logits: one output, named inputs in `names` order."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs))).logits

    return LogitsOnly().eval()


@contextmanager
def quiet(*names: str) -> Iterator[None]:
    """Loggers and warnings down to errors: the exporter's and quantizer's notes are not for users."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def export_graph(predictor: Predictor, names: list[str], path: Path) -> int:
    """Write the fp32 graph with dynamic batch and sequence axes; returns its ONNX opset."""
    import onnx
    import torch

    example = predictor.tokenizer(EXAMPLE_TEXTS, padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = tuple({0: batch, 1: sequence} for _ in names)
    try:
        with quiet("torch.onnx", "torch.export"), torch.no_grad():
            torch.onnx.export(
                logits_module(predictor.model, names),
                tuple(example[name] for name in names),
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=(axes,),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as error:  # torch.export's own errors: many kinds, each with a long report
        summary = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise FinetuneError(
            f"{predictor.source}: torch.onnx could not export this model ({type(error).__name__}: {summary})"
        ) from error
    return max(op.version for op in onnx.load(str(path), load_external_data=False).opset_import)


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet(""):  # its advice to pre-process: symbolic shape inference fails on these graphs
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def session(path: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_parity(
    predictor: Predictor, encoded: Dataset, files: list[Path], batch_size: int, limits: dict[str, float]
) -> list[Parity]:
    """Each exported file against PyTorch on the same batches: fp32 by logits, int8 by predictions."""
    reference = infer(predictor, encoded, batch_size, progress=False)
    results = []
    for path in files:
        exported = onnx_infer(session(path), predictor, encoded, batch_size)
        gate = "agreement" if path.name == INT8_FILE else "max_abs_diff"
        results.append(
            compare(
                predictor, encoded, reference, exported, path.name, limits[gate], gate, limits["max_abs_diff"]
            )
        )
    return results


def describe(predictor: Predictor, names: list[str], opset: int, files: list[Path]) -> dict[str, Any]:
    """export.json: what a program that loads the folder needs to know, and what made it."""
    import onnxruntime
    import torch

    from finetune import __version__

    return {
        "source": str(predictor.source),
        "task": predictor.task,
        "label_names": predictor.label_names,
        "threshold": predictor.threshold if predictor.task == "multi_label" else None,
        "max_length": predictor.max_length,
        "inputs": names,
        "output": "logits",
        "dynamic_axes": {"batch": 0, "sequence": 1},
        "opset": opset,
        "files": [p.name for p in files],
        "versions": {
            "finetune": __version__,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def prepare_folder(folder: Path, overwrite: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if overwrite:  # an int8 file of an earlier export must not sit beside a new fp32 one
        for name in WRITTEN:
            (folder / name).unlink(missing_ok=True)


def export_run(
    source: Path,
    output: Path | None = None,
    fmt: str = "onnx",
    quantize: str | None = None,
    tolerance: float | None = None,
    min_agreement: float | None = None,
    data: Path | None = None,
    max_texts: int = DEFAULT_MAX_TEXTS,
    batch_size: int = 32,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a run's (or model folder's) model to ONNX, check parity, write the folder; see the module doc.

    Raises FinetuneError, after writing parity.json, when an exported file fails its parity check.
    """
    source = Path(source)
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    min_agreement = DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement
    _check_options(fmt, quantize, tolerance, min_agreement)
    model_dir, _ = locate_model(source)
    folder = Path(output) if output is not None else default_output_dir(source)
    check_output_dir(folder, source, model_dir, overwrite)
    require_onnx()
    predictor = load_predictor(source, device="cpu")
    predictor.model.float()  # a CPU graph in fp32, whatever precision the weights were saved in
    texts, where = parity_texts(predictor, source, data, max_texts)
    names = model_inputs(predictor.model, predictor.tokenizer)
    prepare_folder(folder, overwrite)
    started = time.perf_counter()
    files, info = write_folder(predictor, names, folder, quantize)
    seconds = time.perf_counter() - started
    limits = {"max_abs_diff": tolerance, "agreement": min_agreement}
    results = check_parity(predictor, encode(predictor, texts), files, batch_size, limits)
    return _finish(folder, info, results, where, batch_size, seconds)


def write_folder(
    predictor: Predictor, names: list[str], folder: Path, quantize: str | None
) -> tuple[list[Path], dict[str, Any]]:
    """The graph(s), the tokenizer, the config and export.json: everything but the parity report."""
    opset = export_graph(predictor, names, folder / FP32_FILE)
    files = [folder / FP32_FILE]
    if quantize == "int8":
        quantize_int8(folder / FP32_FILE, folder / INT8_FILE)
        files.append(folder / INT8_FILE)
    predictor.tokenizer.save_pretrained(folder)
    predictor.model.config.save_pretrained(folder)
    info = describe(predictor, names, opset, files)
    (folder / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return files, info


def _check_options(fmt: str, quantize: str | None, tolerance: float, min_agreement: float) -> None:
    if fmt not in FORMATS:
        raise FinetuneError(f"--format {fmt}: unknown export format; choose one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise FinetuneError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZATIONS)}")
    if tolerance < 0:
        raise FinetuneError(f"--tolerance {tolerance}: a largest logit difference must be >= 0")
    if not 0 <= min_agreement <= 1:
        raise FinetuneError(f"--min-agreement {min_agreement}: a share between 0 and 1 (0.99 is 99%)")


def _finish(
    folder: Path, info: dict, results: list[Parity], where: str, batch_size: int, seconds: float
) -> dict[str, Any]:
    """Write parity.json; raise if a file failed its check, else return the summary."""
    report = {
        "texts_from": where,
        "batch_size": batch_size,
        "passed": all(r.passed for r in results),
        "checks": [r.to_dict() for r in results],
    }
    (folder / "parity.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = {**info, **report, "output_dir": str(folder), "export_seconds": seconds, "parity": results}
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n  ".join(r.line() for r in results)
        raise FinetuneError(
            f"the ONNX export does not match the PyTorch model on {where}:\n  {lines}\n"
            f"Do not use the files in {folder} (parity.json has the figures). An fp32 failure is an export "
            "problem (report it with the model's name); an int8 one means this model loses too much to "
            "int8: use model.onnx, or lower --min-agreement knowingly."
        )
    return summary
