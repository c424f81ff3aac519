"""Every `python -m fmnist_core` command in the README, read from the README's own text (issue 23:
`train --recipe fast --name myname`, as the README wrote it, ended in a traceback).

Each command is parsed by the real parser, and `train`/`sweep` build their config as they would
run; the optional flags of a synopsis (`[--optimizer sgd|adam]`) must exist, with every listed
choice. Commands that only read are run for real."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

from fmnist_core.commands.cli import _config_from_args, build_parser
from tests.helpers.paths import ROOT

README = (ROOT / "README.md").read_text()
# In a ```sh block: a line, with its `\` continuations, from `python -m fmnist_core` to a comment.
BLOCK_COMMAND = re.compile(r"^(?:\S*?/)?(?:taskset -c \d+ )?(?:\.venv/bin/)?python -m fmnist_core ((?:[^#\n\\]|\\\n)*)", re.M)
# In the prose: `python -m fmnist_core ...` between backticks, possibly over a line break.
INLINE_COMMAND = re.compile(r"`(?:taskset -c \d+ )?(?:\.venv/bin/)?python -m fmnist_core ([^`]+)`")
RUN_FOR_REAL = {"models", "summary"}  # quick, and they only read


def readme_commands() -> list[str]:
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S))
    found = [m.group(1) for m in BLOCK_COMMAND.finditer(blocks)] + [m.group(1) for m in INLINE_COMMAND.finditer(README)]
    commands = [" ".join(c.replace("\\\n", " ").split()) for c in found]
    return sorted({c for c in commands if c and c != "..."})


def bracket_groups(command: str) -> tuple[str, list[str]]:
    """The command without its optional `[...]` parts, and those parts (nested ones flattened)."""
    groups, depth, skeleton, current = [], 0, [], []
    for char in command:
        if char == "[":
            if depth:
                groups.append("".join(current))
                current = []
            depth += 1
        elif char == "]":
            depth -= 1
            groups.append("".join(current))
            current = []
        elif depth:
            current.append(char)
        else:
            skeleton.append(char)
    return "".join(skeleton).replace("...", " "), [g.strip() for g in groups if g.strip()]


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_it_should():
    assert len(COMMANDS) >= 20
    assert {c.split()[0] for c in COMMANDS} >= {"models", "summary", "train", "sweep", "evaluate", "predict", "photos",
                                               "reproduce", "bench", "explain", "export"}


PLACEHOLDER = re.compile(r"^[A-Z_:]+(\.\.\.)?$")  # NAME, HOST:PORT, ROW...: the reader fills them in


def parse_as_the_cli_would(argv: list[str]) -> None:
    """The parser (a flag that is gone exits with status 2), then for train and sweep the config
    they build before anything runs (where `--recipe fast --name NAME` once raised a TypeError)."""
    try:
        args = build_parser(argv[0]).parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 0 and "--help" in argv, f"{shlex.join(argv)}: exit {exit_.code}"
        return
    if argv[0] in ("train", "sweep") and not getattr(args, "resume", None):
        _config_from_args(args)


def takes(action: argparse.Action, value: str) -> bool:
    try:
        (action.type or str)(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False
    return True


def command_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub-)command that `argv` names: `photos add` -> photos' `add`."""
    parser = build_parser(argv[0])
    for word in argv:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands or word not in commands[0].choices:
            break
        parser = commands[0].choices[word]
    return parser


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses_and_builds_its_config(command):
    skeleton, optional = bracket_groups(command)
    if "|" in skeleton:  # `photos list|show NAME|delete NAME`: one command per alternative
        words = skeleton.split()
        variants = [[words[0], *alternative.split()] for alternative in " ".join(words[1:]).split("|")]
    else:
        variants = [shlex.split(skeleton)]
    for argv in variants:
        parse_as_the_cli_would(argv)

    actions = {flag: action for action in command_parser(variants[0])._actions for flag in action.option_strings}
    for group in optional:
        flag, *value = group.split(maxsplit=1)
        if not flag.startswith("-"):
            continue
        assert flag in actions, f"{command!r}: {flag} is not a flag of {variants[0][0]}"
        if not value:
            continue
        alternatives = value[0].split("|")
        if re.fullmatch(r"\d+-\d+", value[0]):  # a range, `--photo-augment 0-1`: its low end
            alternatives = [value[0].split("-")[0]]
        elif PLACEHOLDER.match(value[0]):  # `--name NAME`: a name, where the flag takes one
            alternatives = ["a-name"] if actions[flag].choices is None and takes(actions[flag], "a-name") else []
        for alternative in alternatives:  # each with the rest of the command, as a reader would combine them
            if alternative == "cuda" and not torch.cuda.is_available():
                continue  # refused on this machine, rightly: "CUDA is not available on this machine"
            parse_as_the_cli_would([*variants[0], flag, alternative])


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] in RUN_FOR_REAL])
def test_a_readme_command_that_only_reads_runs_as_written(command, tmp_path):
    checkout_before = sorted(p.name for p in ROOT.iterdir())
    result = subprocess.run([sys.executable, "-m", "fmnist_core", *shlex.split(bracket_groups(command)[0])],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "FMNIST_RUNS_DIR": str(tmp_path / "runs")})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stdout.strip()
    assert sorted(p.name for p in ROOT.iterdir()) == checkout_before  # nothing written into the checkout
