"""The exporter's file follower and metrics, in process (the real process and Prometheus are in
tests/integration/test_eplb_exporter.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from breakeven.shell import eplb_exporter


def line(avg: float, maximum: int, model: str | None = None) -> str:
    balancedness = avg / maximum if maximum else 0.0
    head = f"EPLB step: 1 for model {model}: " if model else "EPLB step: "
    return f"{head}avg_tokens={avg:.2f}, max_tokens={maximum}, balancedness={balancedness:.4f}\n"


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_follower_reads_complete_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "eplb.log"
    follower = eplb_exporter.Follower(log)
    assert list(follower.poll()) == []  # no file yet
    append(log, "a\nb")
    assert list(follower.poll()) == ["a"]
    append(log, "c\n")
    assert list(follower.poll()) == ["bc"]
    assert list(follower.poll()) == []
    follower.close()


def test_follower_follows_a_rename_rotation(tmp_path: Path) -> None:
    log = tmp_path / "eplb.log"
    follower = eplb_exporter.Follower(log)
    append(log, "1\n2\n")
    assert list(follower.poll()) == ["1", "2"]
    append(log, "3\n")  # written before the rotation, not yet read
    os.rename(log, f"{log}.1")
    append(log, "4\n")
    assert list(follower.poll()) == ["3", "4"]
    assert follower.rotations == 1
    append(log, "5\n")
    assert list(follower.poll()) == ["5"]
    follower.close()


def test_follower_reads_the_backup_after_two_rotations_between_polls(tmp_path: Path) -> None:
    log = tmp_path / "eplb.log"
    follower = eplb_exporter.Follower(log)
    append(log, "1\n")
    assert list(follower.poll()) == ["1"]
    append(log, "2\n")
    os.replace(log, f"{log}.1")  # first rotation: our file becomes .1
    append(log, "3\n")
    os.replace(f"{log}.1", f"{log}.2")  # second rotation (backupCount 2)
    os.replace(log, f"{log}.1")
    append(log, "4\n")
    assert list(follower.poll()) == ["2", "3", "4"]
    follower.close()


def test_follower_restarts_a_truncated_file(tmp_path: Path) -> None:
    log = tmp_path / "eplb.log"
    follower = eplb_exporter.Follower(log)
    append(log, "first line\nsecond line\n")
    assert list(follower.poll()) == ["first line", "second line"]
    with open(log, "w") as f:  # copytruncate: same inode, shorter
        f.write("x\n")
    assert list(follower.poll()) == ["x"]
    assert follower.truncations == 1
    follower.close()


def test_follower_drops_a_partial_line_cut_by_rotation(tmp_path: Path) -> None:
    log = tmp_path / "eplb.log"
    follower = eplb_exporter.Follower(log)
    append(log, "whole\nhal")
    assert list(follower.poll()) == ["whole"]
    os.rename(log, f"{log}.1")
    append(log, "next\n")
    assert list(follower.poll()) == ["next"]
    assert follower.dropped == 1
    follower.close()


def test_follower_keeps_reading_a_deleted_file(tmp_path: Path) -> None:
    log = tmp_path / "eplb.log"
    follower = eplb_exporter.Follower(log)
    append(log, "a\n")
    assert list(follower.poll()) == ["a"]
    with open(log, "a") as f:
        os.unlink(log)
        f.write("b\n")
    assert list(follower.poll()) == ["b"]
    follower.close()


def sample(metrics: eplb_exporter.Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_metrics_label_unnamed_lines_with_the_served_model() -> None:
    metrics = eplb_exporter.Metrics("served")
    assert sample(metrics, "breakeven_eplb_steps_total", model="served") == 0.0
    metrics.line(line(50.0, 100))
    metrics.line(line(80.0, 100, model="named"))
    metrics.line(line(0.0, 0))  # idle
    metrics.line("EPLB step: avg_tokens=1")  # truncated
    metrics.line("INFO some other vLLM message")
    assert sample(metrics, "breakeven_eplb_rank_load_max_over_mean", model="served") == 2.0
    assert sample(metrics, "breakeven_eplb_rank_load_max_over_mean", model="named") == 1.25
    assert sample(metrics, "breakeven_eplb_balancedness", model="named") == 0.8
    assert sample(metrics, "breakeven_eplb_avg_tokens", model="named") == 80.0
    assert sample(metrics, "breakeven_eplb_max_tokens", model="named") == 100.0
    assert sample(metrics, "breakeven_eplb_steps_total", model="served") == 2.0
    assert sample(metrics, "breakeven_eplb_idle_steps_total", model="served") == 1.0
    assert sample(metrics, "breakeven_eplb_parse_errors_total", model="served") == 1.0
    # the idle step left the last ratio alone, and the histogram saw only the non-idle step
    assert sample(metrics, "breakeven_eplb_rank_load_max_over_mean_steps_count",
                  model="served") == 1.0  # fmt: skip
    assert sample(metrics, "breakeven_eplb_rank_load_max_over_mean_steps_bucket",
                  model="served", le="1.75") == 0.0  # fmt: skip
    assert sample(metrics, "breakeven_eplb_rank_load_max_over_mean_steps_bucket",
                  model="served", le="2.0") == 1.0  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-file", "/x", "--port", "0"], "--port: 0 is not a TCP port"),
        (["--log-file", "/x", "--port", "70000"], "--port: 70000 is not a TCP port"),
        (["--log-file", "/x", "--port", "9000", "--model", " "], "--model: the model name"),
        (["--log-file", "/x", "--port", "9000", "--poll-interval", "0"], "--poll-interval: 0"),
        (["--log-file", "", "--port", "9000"], "--log-file: empty path"),
    ],
)
def test_cli_rejects_bad_arguments_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from breakeven.cli import main as cli

    assert cli.main(["eplb-exporter", *argv]) == 2
    assert message in capsys.readouterr().err
