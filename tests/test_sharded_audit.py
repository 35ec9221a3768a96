"""``accelerate launch`` of ``hf-dft audit`` / ``certify`` / ``verify`` in two real CPU processes equals one process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from launched_cli import recording
from launching import accelerate_launch, launch_environment
from test_certificate import build_checkpoint, write_dataset

from hf_dft_head import certificate, sharding
from hf_dft_head.cli import main as cli_main

PROCESSES = 2


def audit_args(model: Path, data: Path) -> list[str]:
    # --radius-sample 5: the radius LPs run for a seeded sample of the rule-decided sets (the second engine call).
    return ["audit", str(model), "--dataset", str(data), "--output", "report.json", "--plot", "--radius-sample", "5"]


@pytest.mark.slow
def test_two_processes_audit_certify_and_verify_as_one_process(tmp_path, monkeypatch, capsys) -> None:
    data = write_dataset(tmp_path / "gold.jsonl")
    # DFT head with 2 slack columns: the rule decides some sets, the LP the others (both kinds are shared out).
    model = build_checkpoint(tmp_path / "model", slack_dims=2)
    by_one, by_two = (shutil.copytree(model, tmp_path / name) for name in ("certified_by_one", "certified_by_two"))
    one, two, records = (tmp_path / name for name in ("one", "two", "records"))
    for folder in (one, two, records):
        folder.mkdir()

    # The reference: one process, each engine call recorded with the full list of label sets.
    one_calls: list[list[list[int]]] = []
    monkeypatch.setattr(sharding, "verify_label_sets", recording(one_calls))
    monkeypatch.chdir(one)
    assert cli_main([*audit_args(model, data), "--quiet"]) == 0
    assert cli_main(["certify", str(by_one), "--dataset", str(data), "--quiet"]) == 0
    capsys.readouterr()

    # Two processes, one launch: audit, certify, verify the one-process certificate, then bad input.
    commands = [
        audit_args(model, data),
        ["certify", str(by_two), "--dataset", str(data)],
        ["verify", str(by_one)],
        ["audit", str(model), "--dataset", str(tmp_path / "missing.jsonl"), "--output", "bad.json"],
    ]
    program = [str(REPO_ROOT / "tests" / "launched_cli.py"), str(records)]
    for argv in commands:
        program += ["--", *argv, "--quiet"]
    launched = subprocess.run(
        accelerate_launch(PROCESSES, *program),
        capture_output=True,
        text=True,
        env=launch_environment(),
        cwd=two,
        timeout=600,
    )
    main_record = json.loads((records / "process0.json").read_text())
    other_record = json.loads((records / "process1.json").read_text())
    assert main_record["codes"] == [0, 0, 0, 2], launched.stderr[-4000:]
    assert other_record["codes"][:3] == [0, 0, 0]

    # Bad input: one message from the main process, no traceback of ours; the launcher then names exit code 2.
    assert launched.returncode != 0
    assert launched.stderr.count("hf-dft audit: error: data file") == 1, launched.stderr[-4000:]
    assert "(process 1)" not in launched.stderr
    assert str(REPO_ROOT / "hf_dft_head") not in launched.stderr
    assert "exitcode  : 2" in launched.stderr
    assert not (two / "bad.json").exists()

    # Only the main process printed: one summary per command.
    assert launched.stdout.count("Report: report.json") == 1
    assert f"(label sets verified by {PROCESSES} processes)" in launched.stdout
    assert launched.stdout.count("Verification of") == 1 and f"{by_one}: VERIFIED" in launched.stdout

    # The audit: the same report and figure, byte for byte (the report has no timing field to leave out).
    report = json.loads((one / "report.json").read_text())
    assert (two / "report.json").read_bytes() == (one / "report.json").read_bytes()
    assert (two / "argmaxability.png").read_bytes() == (one / "argmaxability.png").read_bytes()
    radius = report["verifier"]["radius"]
    assert radius["lp_decided_sets"] > 0 and radius["rule_decided_argmaxable_sets"] > radius["sample_size"] == 5
    assert radius["computed_for"] == "sample"
    assert report["gold"]["unargmaxable"] > 0 and report["gold"]["argmaxable"] > 0

    # The certificates: identical but for the date; the two-process one verifies in one process.
    one_certificate = json.loads((by_one / certificate.CERTIFICATE_NAME).read_text())
    two_certificate = json.loads((by_two / certificate.CERTIFICATE_NAME).read_text())
    assert two_certificate["status"] == "certified"
    for made in (one_certificate, two_certificate):
        del made["created_utc"]
    assert two_certificate == one_certificate
    assert cli_main(["verify", str(by_two), "--quiet"]) == 0
    assert f"{by_two}: VERIFIED" in capsys.readouterr().out

    # The work was shared: each engine call's sets were split between the processes, none verified twice.
    calls = list(zip(main_record["verified"], other_record["verified"], one_calls, strict=True))
    assert len(calls) == 6  # audit, certify, verify: all the sets, then the radius sample
    for main_share, other_share, everything in calls:
        shares = [tuple(labels) for labels in main_share + other_share]
        assert sorted(shares) == sorted(tuple(labels) for labels in everything)
        assert len(set(shares)) == len(shares) and main_share and other_share


def test_run_plainly_nothing_is_launched(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("PartialState must not be initialised outside a launch")

    monkeypatch.setattr(sharding, "PartialState", refuse)
    with sharding.across_launched_processes() as processes:
        assert processes == sharding.Processes() and processes.is_main and not processes.sharded
        assert sharding.cores_per_process(2) == 2
    assert list(sharding.Processes(1, 3).share(8)) == [1, 4, 7]


def test_launched_processes_share_the_cores(monkeypatch) -> None:
    monkeypatch.setattr(sharding, "_ACTIVE", [sharding.Processes(1, 4, local_count=2)])
    assert sharding.cores_per_process(2) == 1 and sharding.cores_per_process(7) == 3 and sharding.cores_per_process(1)


def test_an_error_of_another_process_is_printed_after_the_grace_time(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sharding, "ERROR_GRACE_SECONDS", 0.0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    sharding.report_error("hf-dft audit: error: x")
    assert capsys.readouterr().err == "(process 1) hf-dft audit: error: x\n"
    monkeypatch.setenv("RANK", "0")
    sharding.report_error("hf-dft audit: error: x")
    assert capsys.readouterr().err == "hf-dft audit: error: x\n"
