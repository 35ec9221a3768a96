"""The ``hf-dft`` console entry: one command, one subcommand per job (:data:`SUBCOMMANDS`), and all of its
argument parsing.

Options are dataclass fields with ``metadata={"help": ...}`` (parsed by transformers' ``HfArgumentParser``), so
every option documents itself and the Python API takes the same objects. Bad input ends in one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from . import audit, audit_report, certificate, certificate_report, hub, onnx_export, predict, sharding, thresholds
from .checkpoints import CheckpointError, download_checkpoint, looks_like_repo_id
from .console import configure_output
from .data import DataArguments, DataSpec, read_training_data_spec
from .evaluation import evaluate_checkpoint
from .output_checks import check_writable_file, check_writable_folder, write_json
from .training import train
from .training_args import DFTTrainingArguments

# Exit codes of `hf-dft verify` (0 and 2 are shared by every subcommand).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3


@dataclass
class AuditOutputArguments:
    """What ``hf-dft audit`` writes."""

    output: str | None = field(
        default=None, metadata={"help": f"JSON report path (default: ./{audit_report.AUDIT_REPORT_NAME})"}
    )
    plot: str | None = field(
        default=None,
        metadata={
            "nargs": "?",
            "const": "",
            "help": "also write a PNG figure of the argmaxable share by set size, to this path (default: "
            f"{audit_report.AUDIT_FIGURE_NAME} next to the report)",
        },
    )
    assume_multi_label: bool = field(
        default=False, metadata={"help": "treat a checkpoint without problem_type as a sigmoid multi-label model"}
    )


@dataclass
class EvaluateArguments:
    """Options of ``hf-dft evaluate``."""

    output: str | None = field(default=None, metadata={"help": "write the metrics as JSON to this path"})
    batch_size: int = field(default=32, metadata={"help": "batch size"})
    max_length: int = field(default=128, metadata={"help": "tokenizer max length"})
    assume_multi_label: bool = field(
        default=False, metadata={"help": "treat a checkpoint without problem_type as a sigmoid multi-label model"}
    )


@dataclass
class VerifyArguments:
    """Options of ``hf-dft verify``."""

    revision: str | None = field(default=None, metadata={"help": "revision of a Hub repo (default: main)"})
    dataset: str | None = field(
        default=None, metadata={"help": "where the certificate's audit data is on this machine, if it moved"}
    )
    skip_audit: bool = field(
        default=False,
        metadata={"help": "do not recompute the audit (exit code 3 and 'NOT FULLY VERIFIED' unless a check fails)"},
    )
    workers: int | None = field(
        default=None,
        metadata={
            "help": "processes for the LP verifier; results do not depend on it (default: the cores available for "
            "heads the LP decides, 1 for a pure DFT head)"
        },
    )


@dataclass
class PushArguments:
    """Options of ``hf-dft push``."""

    private: bool = field(default=False, metadata={"help": "create the repo private"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the stored login)"})
    commit_message: str | None = field(default=None, metadata={"help": "message of the upload commit"})
    retries: int = field(default=3, metadata={"help": "attempts per network step"})
    dataset: str | None = field(
        default=None, metadata={"help": "where the certificate's audit data is on this machine, if it moved"}
    )
    skip_audit: bool = field(
        default=False,
        metadata={"help": "do not recompute the audit before pushing; the card then shows no audit or quality numbers"},
    )
    base_model: str | None = field(default=None, metadata={"help": "base_model of the card's metadata (a Hub id)"})
    card_dataset: list[str] | None = field(default=None, metadata={"help": "Hub dataset ids for the card's metadata"})
    license: str | None = field(default=None, metadata={"help": "licence identifier for the card's metadata"})


@dataclass
class ProgressArguments:
    """Console output."""

    quiet: bool = field(
        default=False, metadata={"help": "no progress bars (also none of datasets, transformers or the Hub client)"}
    )


def _dataclass_from(namespace: argparse.Namespace, cls):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in vars(namespace).items() if key in names})


# ----------------------------------------------------------------------------------------------------------------
# Handlers: parsed options in, exit code out
# ----------------------------------------------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    train(_dataclass_from(args, DFTTrainingArguments))
    return EXIT_OK


def _data_spec(args: argparse.Namespace, checkpoint: Path | None = None) -> DataSpec:
    """The data spec of the command line; with no data option and a ``checkpoint``, the data the run trained on
    (its ``training_args.json``), same split."""
    spec = _dataclass_from(args, DataSpec)
    return read_training_data_spec(checkpoint, spec.split) if checkpoint is not None and not spec.given() else spec


def run_audit(args: argparse.Namespace) -> int:
    output = _dataclass_from(args, AuditOutputArguments)
    options = _dataclass_from(args, audit.VerifierOptions)
    # Before the LPs: an unwritable report path found only at the end would waste the whole audit.
    report_path = Path(output.output or audit_report.AUDIT_REPORT_NAME)
    check_writable_file(report_path, option="--output")
    if output.plot is not None:
        check_writable_file(output.plot or report_path.parent / audit_report.AUDIT_FIGURE_NAME, option="--plot")
    with sharding.across_launched_processes() as processes:  # under `accelerate launch`: verdicts shared out
        report = audit.audit_checkpoint(
            args.model,
            _data_spec(args),
            options,
            assume_multi_label=output.assume_multi_label,
            progress=not args.quiet and processes.is_main,
        )
    if not processes.is_main:
        return EXIT_OK  # the main process, which gathered the same report, writes it
    plot_path = None
    if output.plot is not None:
        plot_path = Path(output.plot or report_path.parent / audit_report.AUDIT_FIGURE_NAME)
        report["figure"] = {"path": str(plot_path), "series": audit_report.plot_series(report)}
        audit_report.write_plot(report, plot_path)
    write_json(report, report_path)
    print(audit_report.format_summary(report))
    print(f"Report: {report_path}" + (f"; figure: {plot_path}" if plot_path else "") + _shared_over(processes))
    return EXIT_OK


def _shared_over(processes: sharding.Processes) -> str:
    return f" (label sets verified by {processes.count} processes)" if processes.sharded else ""


def run_predict(args: argparse.Namespace) -> int:
    options = _dataclass_from(args, predict.PredictArguments)
    predict.run_predict(args.checkpoint, args.texts, options, progress=not args.quiet)
    return EXIT_OK


def run_evaluate(args: argparse.Namespace) -> int:
    options = _dataclass_from(args, EvaluateArguments)
    if options.output is not None:
        check_writable_file(Path(options.output), option="--output")
    result = evaluate_checkpoint(
        args.checkpoint,
        _data_spec(args),
        batch_size=options.batch_size,
        max_length=options.max_length,
        assume_multi_label=options.assume_multi_label,
        progress=not args.quiet,
    )
    if options.output is not None:
        write_json(result, Path(options.output))
    dataset = result["dataset"]
    print(
        f"{args.checkpoint} on {dataset.get('dataset') or dataset.get('data_files')} split={dataset['split']} "
        f"({dataset['examples']} examples):"
    )
    print("  " + "  ".join(f"{name} {value:.4f}" for name, value in result["metrics"].items()))
    if options.output is not None:
        print(f"Metrics: {options.output}")
    return EXIT_OK


def run_tune_thresholds(args: argparse.Namespace) -> int:
    options = _dataclass_from(args, thresholds.ThresholdOptions)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_dir():
        raise ValueError(f"{checkpoint} is not a checkpoint folder")
    # Always the validation split; with no data option, of the data (and seed) the run trained on.
    spec = dataclasses.replace(_data_spec(args), split="validation")
    if not spec.given():
        spec = read_training_data_spec(checkpoint, "validation")
    record = thresholds.tune_checkpoint(checkpoint, spec, options, progress=not args.quiet)
    print(thresholds.format_record(record))
    return EXIT_OK


def run_certify(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_dir():
        raise ValueError(f"{checkpoint} is not a checkpoint folder")
    check_writable_folder(checkpoint, option="CHECKPOINT")  # before the audit: the certificate is written there
    # No data option given: the data the run trained on (training_args.json).
    spec = _data_spec(args, checkpoint)
    with sharding.across_launched_processes() as processes:
        written = certificate.certify(
            checkpoint,
            spec,
            _dataclass_from(args, audit.VerifierOptions),
            progress=not args.quiet and processes.is_main,
        )
    if processes.is_main:
        print(certificate_report.format_certificate(written))
        print(
            f"Wrote {checkpoint / certificate.CERTIFICATE_NAME} and {checkpoint / written['figure']['path']}"
            + _shared_over(processes)
        )
    return EXIT_OK if written["status"] == "certified" else EXIT_FAILED


def run_verify(args: argparse.Namespace) -> int:
    options = _dataclass_from(args, VerifyArguments)
    name = args.checkpoint
    with tempfile.TemporaryDirectory(prefix="hf_dft_verify_") as scratch:
        if Path(name).is_dir():
            folder, remote_files = Path(name), None
        elif looks_like_repo_id(name):
            folder = Path(scratch) / "snapshot"
            remote_files = download_checkpoint(name, folder, revision=options.revision)
        else:
            raise ValueError(f"{name} is not a checkpoint folder (and not a Hub repo id of the form namespace/name).")
        with sharding.across_launched_processes() as processes:
            result = certificate.verify_checkpoint(
                folder,
                recheck_audit=not options.skip_audit,
                dataset=options.dataset,
                workers=options.workers,
                progress=not args.quiet and processes.is_main,
                remote_files=remote_files,
            )
    result.checkpoint = name
    if processes.is_main:
        print(result.summary())
    return {certificate.VERIFIED: EXIT_OK, certificate.PARTIAL: EXIT_PARTIAL}.get(result.outcome, EXIT_FAILED)


def run_push(args: argparse.Namespace) -> int:
    options = _dataclass_from(args, PushArguments)
    card_options = {"base_model": options.base_model, "datasets": options.card_dataset, "license": options.license}
    try:
        result = hub.push_checkpoint(
            args.checkpoint,
            args.repo_id,
            private=options.private,
            token=options.token,
            commit_message=options.commit_message,
            attempts=options.retries,
            recheck_audit=not options.skip_audit,
            dataset=options.dataset,
            card_options={key: value for key, value in card_options.items() if value},
            progress=not args.quiet,
        )
    except hub.PushError as error:
        print(f"hf-dft push: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Pushed {len(result.files)} files to {result.repo_id} in commit {result.commit_sha}: {result.commit_url}")
    if options.skip_audit:
        print("The audit was not re-checked (--skip-audit): the card shows no audit or quality numbers.")
    return EXIT_OK


def run_export_onnx(args: argparse.Namespace) -> int:
    options = _dataclass_from(args, onnx_export.OnnxExportArguments)
    try:
        report = onnx_export.export_onnx(args.checkpoint, args.output_dir, **dataclasses.asdict(options))
    except onnx_export.OnnxExportError as error:
        print(f"hf-dft export-onnx: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(onnx_export.format_export_summary(report, args.output_dir))
    return EXIT_OK


# ----------------------------------------------------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------------------------------------------------

# name -> (help, description, option dataclasses, positional arguments (name, help[, nargs]), handler)
SUBCOMMANDS: dict[str, tuple[str, str, list, list[tuple], Callable[[argparse.Namespace], int]]] = {
    "train": (
        "Train a multi-label classifier (DFT, bottleneck or dense head) with Accelerate.",
        "Train on a Hub data set or local files; with no --dataset, on the bundled disaster-response messages with "
        "the bundled all-MiniLM-L6-v2 encoder.",
        [DFTTrainingArguments, ProgressArguments],
        [],
        run_train,
    ),
    "audit": (
        "Audit any multi-label sigmoid checkpoint: which label sets can it never output?",
        "Verify the distinct gold and predicted label sets of one data split with the argmaxability engine; write a "
        "JSON report (and a figure).",
        [DataSpec, audit.VerifierOptions, AuditOutputArguments, ProgressArguments],
        [("model", "checkpoint folder or Hub id of a multi-label sigmoid classifier")],
        run_audit,
    ),
    "predict": (
        "Predict label sets of texts (arguments or a .jsonl/.csv/.txt file) as JSON lines.",
        "Predict each text's label set (names, scores, and whether it is within the head's guarantee) with a "
        "checkpoint folder or Hub repo; JSON lines to stdout or --output.",
        [predict.PredictArguments, ProgressArguments],
        [
            ("checkpoint", "checkpoint folder or Hub repo id (namespace/name)"),
            ("texts", "texts to classify (or give --input FILE)", "*"),
        ],
        run_predict,
    ),
    "evaluate": (
        "Quality metrics of a checkpoint on any split (same data options as train).",
        "P@k, R@k, F1@k, nDCG@k, micro/macro-F1 and exact match of the model's predictions on one split of a data "
        "set, its labels matched to the model's by name.",
        [DataSpec, EvaluateArguments, ProgressArguments],
        [("checkpoint", "checkpoint folder or Hub id of a multi-label classifier")],
        run_evaluate,
    ),
    "tune-thresholds": (
        "Tune per-label decision thresholds on the validation split (micro- or macro-F1).",
        "Tune one logit threshold per label on the validation split of the training data (or --dataset ...), "
        "exactly for micro- or macro-F1, and store them in config.json (applied by predict, the pipeline, evaluate "
        "and audit); with --keep-guarantee fold their projection onto the head's column space into its input bias "
        "instead, so the DFT guarantee and certificate stay intact.",
        [DataArguments, thresholds.ThresholdOptions, ProgressArguments],
        [("checkpoint", "checkpoint folder")],
        run_tune_thresholds,
    ),
    "certify": (
        "Write an argmaxability certificate into a checkpoint.",
        "Check the head, the shipped code and the audit of one split; write dft_certificate.json and the figure. "
        "Exit 0 when certified, 1 when the checkpoint cannot be certified (the certificate says why).",
        [DataSpec, audit.VerifierOptions, ProgressArguments],
        [("checkpoint", "checkpoint folder (the certificate and figure are written into it)")],
        run_certify,
    ),
    "verify": (
        "Recompute a checkpoint's certificate (local folder or Hub repo).",
        "Recompute every section of the certificate with this package and name each mismatch. Exit 0: verified; "
        "1: a mismatch; 3: no mismatch but not everything was checked (--skip-audit); 2: bad input.",
        [VerifyArguments, ProgressArguments],
        [("checkpoint", "checkpoint folder, or a Hub repo id (namespace/name) to download and verify")],
        run_verify,
    ),
    "push": (
        "Publish a certified checkpoint to the Hugging Face Hub.",
        "Verify the checkpoint, then upload exactly the verified files, the certificate and a rendered model card "
        "in one commit.",
        [PushArguments, ProgressArguments],
        [("checkpoint", "a certified checkpoint folder"), ("repo_id", "target Hub repo, namespace/name")],
        run_push,
    ),
    "export-onnx": (
        "Export a checkpoint to ONNX (model.onnx, tokenizer, config), checked against PyTorch under onnxruntime.",
        "Export with torch.onnx (dynamo; dynamic batch and sequence axes; both DFT paths) and refuse to write unless "
        "onnxruntime's logits match PyTorch's within --tolerance.",
        [onnx_export.OnnxExportArguments, ProgressArguments],
        [
            ("checkpoint", "local checkpoint folder"),
            ("output_dir", "folder for model.onnx, the tokenizer, config.json and onnx_export.json"),
        ],
        run_export_onnx,
    ),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default unless it is None or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``hf-dft`` parser with all subcommands."""
    commands = "\n".join(f"  hf-dft {name:<15} {entry[0]}" for name, entry in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="hf-dft",
        description="Provably argmaxable multi-label heads for transformers: train, evaluate, audit, certify, "
        f"verify and publish.\n\n{commands}\n\nRun `hf-dft COMMAND --help` for a command's options.",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show everything: INFO logs and every library's progress bars"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    for name, (help_text, description, option_classes, positionals, _) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=description,
            dataclass_types=option_classes,
            formatter_class=_HelpFormatter,
        )
        for positional, positional_help, *count in positionals:
            sub.add_argument(positional, help=positional_help, nargs=count[0] if count else None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's usage errors (exit 2) and --help (exit 0), as a return code
        return int(exit_.code or 0)
    configure_output(verbose=args.verbose, quiet=getattr(args, "quiet", False))
    try:
        return SUBCOMMANDS[args.command][4](args)
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        # Bad input: one clear line (once under `accelerate launch`), no traceback, nothing written has been removed.
        sharding.report_error(f"hf-dft {args.command}: error: {error}")
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
