#!/usr/bin/env python
"""Build the reconlab report: one self-contained HTML page from the MLflow runs that exist.

    python dashboards/build_report.py [--experiment NAME ...] [--tracking-uri URI] [--out DIR]

`make report` runs it on the local store; `make run` ends with it.
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.cli import run_job
from reconlab.dashboards import main

if __name__ == "__main__":
    sys.exit(run_job(main))
