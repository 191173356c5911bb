"""`finetune predict`, `evaluate`, `export`, `compare` and `report`: using and reading what runs left behind."""

from __future__ import annotations

import argparse
from pathlib import Path


def _input_columns(args: argparse.Namespace) -> dict:
    """Column and file options for `predict`/`evaluate` (None: the run's recipe, or the default)."""
    names = ("text", "text_pair", "label", "label_separator", "format")
    columns = {name: getattr(args, name, None) for name in names}
    columns = {
        k: (int(v) if isinstance(v, str) and v.isdigit() and k != "label_separator" else v)
        for k, v in columns.items()
    }
    if getattr(args, "no_header", False):
        columns["header"] = False
    return columns


def cmd_predict(args: argparse.Namespace) -> int:
    from finetune.inference.predict import predict_file

    records = predict_file(
        args.source,
        args.input,
        args.output,
        batch_size=args.batch_size,
        columns=_input_columns(args),
        threshold=args.threshold,
        max_length=args.max_length,
        device=args.device,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(records):,} predictions to {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from finetune.inference.evaluate import evaluate_file
    from finetune.training.callbacks import format_metrics

    summary = evaluate_file(
        args.source,
        args.data,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        columns=_input_columns(args),
        threshold=args.threshold,
        max_length=args.max_length,
        device=args.device,
        overwrite=args.overwrite,
    )
    print(f"{summary['examples']:,} examples of {summary['data']}: {format_metrics(summary['metrics'])}")
    print(
        f"wrote evaluation.json, predictions.jsonl, {', '.join(summary['figures'])} to {summary['output_dir']}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from finetune.inference.export import export_run

    summary = export_run(
        args.source,
        args.output,
        fmt=args.format,
        quantize=args.quantize,
        tolerance=args.tolerance,
        min_agreement=args.min_agreement,
        data=args.data,
        max_texts=args.max_texts,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    print(
        f"exported {', '.join(summary['files'])} (opset {summary['opset']}; inputs {', '.join(summary['inputs'])}; "
        f"dynamic batch and sequence) in {summary['export_seconds']:.1f} s"
    )
    print(f"parity on {summary['parity'][0].texts:,} texts, {summary['texts_from']}:")
    for result in summary["parity"]:
        print(f"  {result.line()}")
    print(f"wrote the model, tokenizer, config.json, export.json and parity.json to {summary['output_dir']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from finetune.runs.compare import compare_runs

    print(compare_runs(args.runs, figure=None if args.no_plot else args.plot))
    if not args.no_plot:
        print(f"\nwrote {args.plot}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from finetune.runs.report import write_run_documents

    for path in write_run_documents(args.run):
        print(f"wrote {path}")
    return 0


def _add_input_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "source", type=Path, help="a run folder (uses its model/ and recipe.yaml) or a model folder"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    parser.add_argument(
        "--text", help=f"column of the {what} texts (default: the run's data.text, else 'text')"
    )
    parser.add_argument("--text-pair", help="column of the second text of sentence pairs")
    parser.add_argument(
        "--format",
        choices=["csv", "tsv", "json", "jsonl", "parquet", "conll"],
        help="file format (default: from the extension)",
    )
    parser.add_argument(
        "--no-header", action="store_true", help="CSV/TSV without a header row (columns by position)"
    )
    parser.add_argument("--threshold", type=float, help="multi_label decision threshold (default: the run's)")
    parser.add_argument("--max-length", type=int, help="token limit (default: the run's data.max_length)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """`predict`, `evaluate`, `compare`, `report`: using and reading what runs left behind."""
    predict = commands.add_parser("predict", help="predict labels for a file of texts with a trained model")
    _add_input_options(predict, "input")
    predict.add_argument(
        "--input", type=Path, required=True, help="csv, tsv, json, jsonl or parquet (CoNLL for tagging)"
    )
    predict.add_argument(
        "--output", type=Path, required=True, help="JSON-lines file: one prediction per input, in order"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file (never the --input)"
    )
    predict.set_defaults(handler=cmd_predict)

    evaluate = commands.add_parser(
        "evaluate", help="metrics and a confusion matrix of a trained model on a labelled file"
    )
    _add_input_options(evaluate, "labelled")
    evaluate.add_argument("--data", type=Path, required=True, help="labelled file, read like training data")
    evaluate.add_argument("--label", help="label column (default: the run's data.label, else 'label')")
    evaluate.add_argument(
        "--label-separator", help="multi_label: separator in label cells (default: the run's)"
    )
    evaluate.add_argument("--output-dir", type=Path, help="default: <run>/evaluations/<file name>")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier evaluation in that folder"
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    add_export_command(commands)

    compare = commands.add_parser(
        "compare", help="table of how runs differ and score, and their validation curves"
    )
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="two or more run folders")
    compare.add_argument(
        "--plot", type=Path, default=Path("compare.png"), help="figure path (default compare.png)"
    )
    compare.add_argument("--no-plot", action="store_true", help="print the table only")
    compare.set_defaults(handler=cmd_compare)

    report = commands.add_parser("report", help="(re)write report.md and the model card of a run folder")
    report.add_argument("run", type=Path, metavar="RUN_DIR")
    report.set_defaults(handler=cmd_report)


def add_export_command(commands: argparse._SubParsersAction) -> None:
    """`finetune export`: an ONNX folder that onnxruntime runs, checked against the PyTorch model."""
    export = commands.add_parser(
        "export", help="export a trained model to ONNX (optionally int8), checked against PyTorch"
    )
    export.add_argument(
        "source", type=Path, help="a run folder (uses its model/ and recipe.yaml) or a model folder"
    )
    export.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default onnx)")
    export.add_argument(
        "--quantize", choices=["int8"], help="also write model.int8.onnx (dynamic int8 quantization)"
    )
    export.add_argument("--output", type=Path, help="folder to write (default: <run>/export-onnx)")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in a non-empty --output folder"
    )
    export.add_argument(
        "--tolerance",
        type=float,
        help="largest |logit difference| allowed for model.onnx (default 1e-3)",
    )
    export.add_argument(
        "--min-agreement",
        type=float,
        help="share of predictions model.int8.onnx must agree on (default 0.99)",
    )
    export.add_argument(
        "--data", type=Path, help="texts to check parity on (default: the run's validation split)"
    )
    export.add_argument(
        "--max-texts",
        type=int,
        default=1000,
        help="check parity on at most this many texts (default 1000; 0: all)",
    )
    export.add_argument("--batch-size", type=int, default=32, help="texts per batch in the parity check")
    export.set_defaults(handler=cmd_export)
