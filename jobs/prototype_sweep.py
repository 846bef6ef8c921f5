#!/usr/bin/env python
"""Prototype heads (thesis ch. 4): hyperspherical and hyperbolic Busemann
classifiers in 2, 3 and 5 dimensions, Tables 4.1/4.2 with the thesis beside,
on Ray Train + Ray Tune + Optuna, tracked in MLflow.

    python jobs/prototype_sweep.py [--smoke-test] [--data-root DIR] ...
    ray job submit --working-dir . -- python jobs/prototype_sweep.py --smoke-test
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout, e.g. under `ray job submit` on a cluster
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.studies.prototypes import STUDY
from reconlab.sweep.study import run_study

if __name__ == "__main__":
    sys.exit(run_study(STUDY))
