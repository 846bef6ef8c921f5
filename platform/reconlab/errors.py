"""Errors that mean "bad input": jobs turn them into exit status 2 and one line."""

from __future__ import annotations

_UNSET = object()


class InputError(ValueError):
    """Bad user input (usage, config or data).

    The message is a single line: ``<file>: key 'k' = <value>: <what is wrong>``.
    """

    def __init__(self, message: str, *, source=None, key: str | None = None, value=_UNSET):
        self.source, self.key = source, key
        self.value = None if value is _UNSET else value
        where = [str(source)] if source else []
        if key:
            where.append(f"key '{key}'" + ("" if value is _UNSET else f" = {value!r}"))
        elif value is not _UNSET:
            where.append(f"value {value!r}")
        line = ": ".join([", ".join(where), message]) if where else message
        super().__init__(" ".join(line.split()))  # always one line


class ConfigError(InputError):
    """A YAML/config value does not fit its dataclass."""


class DataError(InputError):
    """A dataset file is missing, truncated or malformed."""
