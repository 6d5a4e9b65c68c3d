"""What the apps' command lines share: one subcommand alone, small files read capped."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from crdtgossip.apps._cli import read_small_file, run_alone
from crdtgossip.errors import ConfigError


def test_run_alone_parses_one_subcommand_and_returns_its_status() -> None:
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 3

    def add_echo(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    ) -> argparse.ArgumentParser:
        parser = subparsers.add_parser("echo")
        parser.add_argument("--word", required=True)
        parser.set_defaults(run=run)
        return parser

    assert run_alone(add_echo, ["echo", "--word", "hi"]) == 3
    assert [(args.command, args.word) for args in seen] == [("echo", "hi")]
    with pytest.raises(SystemExit) as caught:
        run_alone(add_echo, ["agent"])
    assert caught.value.code == 2


def test_read_small_file_reads_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_small_file(path, 10, "--template") == b"x" * 10
    with pytest.raises(ConfigError, match=re.escape(f"--template {path} is larger than 9 bytes")):
        read_small_file(path, 9, "--template")
    with pytest.raises(ConfigError, match=r"^cannot read token file .*missing: No such file"):
        read_small_file(tmp_path / "missing", 10, "token file")
