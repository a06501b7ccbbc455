"""Argument types and options shared by the `filetrash` commands, the runtime's and the apps'.
Only argparse: building the parser must stay fast."""

from __future__ import annotations

import argparse
import sys


def add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for machines: one object per line",
    )


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def rate(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (as fast as possible) or positive: {text}")
    return value


def user_error(message: str) -> int:
    """One line on stderr; exit status 2 (the user can fix it)."""
    print(f"filetrash: error: {message}", file=sys.stderr)
    return 2
