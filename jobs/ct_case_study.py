#!/usr/bin/env python
"""The CT case study (thesis ch. 5) on ASTRA: SIRT + network inversion against fair baselines, on Ray Tune + Optuna,
tracked in MLflow.

    python jobs/ct_case_study.py [--smoke-test] [--num-samples N] [--search-space search_spaces/ct_phantoms.yaml] ...
    ray job submit --working-dir . -- python jobs/ct_case_study.py --smoke-test
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout, e.g. under `ray job submit` on a cluster
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.studies.ct import STUDY
from reconlab.sweep.study import run_study

if __name__ == "__main__":
    sys.exit(run_study(STUDY))
