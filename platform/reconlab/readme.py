"""Write a job's result table into a Markdown file (e.g. docs/results.md) between
two marker comments, ``<!-- reconlab:NAME -->`` and ``<!-- /reconlab:NAME -->``.

The file is checked before any Ray work (``check``) and replaced whole through
a temporary file and ``os.replace`` (``write_block``): a crash leaves the old
file, never half a table.
"""

from __future__ import annotations

import os
import tempfile

from reconlab.errors import InputError


def markers(name: str) -> tuple[str, str]:
    return f"<!-- reconlab:{name} -->", f"<!-- /reconlab:{name} -->"


def check(path: str, name: str, key: str = "--readme") -> str:
    """The file's text; a clear error if it cannot be read and written or
    lacks the two markers in order."""
    begin, end = markers(name)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({getattr(e, 'strerror', None) or e})", key=key, value=path) from None
    if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK) or not os.access(path, os.W_OK):
        raise InputError("not writable (the file and its directory must be)", key=key, value=path)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i or text.count(begin) != 1 or text.count(end) != 1:
        raise InputError(f"needs one '{begin}' line followed by one '{end}' line", key=key, value=path)
    return text


def write_block(path: str, name: str, block: str) -> None:
    """Replace what lies between the markers with ``block``."""
    begin, end = markers(name)
    text = check(path, name)
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    new = f"{head}{begin}\n{block.strip()}\n{end}{tail}"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".readme-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
