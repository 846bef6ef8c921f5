"""Errors that mean "bad input": jobs turn them into exit status 2 and one line."""

from __future__ import annotations

import argparse
import reprlib
import sys
import traceback
from typing import Callable

_UNSET = object()

# Values are shown with bounded size and depth: a YAML alias bomb or a deeply
# nested document must not turn the one error line into megabytes (or a
# RecursionError while formatting it).
class _Repr(reprlib.Repr):
    def repr_dict(self, x, level):  # insertion order, as the YAML had it (reprlib sorts)
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = list(x.items())
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in items[:self.maxdict]]
        return "{" + ", ".join(pieces + (["..."] if len(items) > self.maxdict else [])) + "}"


_REPR = _Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 6, 6
_REPR.maxset, _REPR.maxfrozenset, _REPR.maxdeque, _REPR.maxarray = 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 120, 120, 60


def show(value, limit: int = 400) -> str:
    """``repr(value)``, shortened to at most ``limit`` characters."""
    try:
        s = _REPR.repr(value)
    except Exception:  # a value whose __repr__ fails still gets a line
        return f"<{type(value).__name__}>"
    return s if len(s) <= limit else s[:limit - 3] + "..."


class InputError(ValueError):
    """Bad user input (usage, config or data).

    The message is a single line: ``<file>: key 'k' = <value>: <what is wrong>``.
    """

    def __init__(self, message: str, *, source=None, key: str | None = None, value=_UNSET):
        self.source, self.key = source, key
        self.value = None if value is _UNSET else value
        where = [str(source)] if source else []
        if key:
            where.append(f"key '{key}'" + ("" if value is _UNSET else f" = {show(value)}"))
        elif value is not _UNSET:
            where.append(f"value {show(value)}")
        line = ": ".join([", ".join(where), message]) if where else message
        super().__init__(" ".join(line.split()))  # always one line


class ConfigError(InputError):
    """A YAML/config value does not fit its dataclass."""


class DataError(InputError):
    """A dataset file is missing, truncated or malformed."""


EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2  # done; a runtime failure; bad input (one line, before Ray)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; make it one line
        raise InputError(f"{self.prog}: {message}")


def run_job(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main`` and map errors onto the exit-code contract."""
    try:
        return main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE
