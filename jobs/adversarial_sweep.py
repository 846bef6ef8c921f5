#!/usr/bin/env python
"""Adversarial robustness: the report's classifier under pixel noise, FGSM and the one-pixel attack (differential
evolution vs random search), N2N denoisers under DAG and PGD, on Ray Tune + Optuna, tracked in MLflow.

    python jobs/adversarial_sweep.py [--smoke-test] [--num-samples N] [--search-space search_spaces/adversarial.yaml] ...
    ray job submit --working-dir . -- python jobs/adversarial_sweep.py --smoke-test
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout, e.g. under `ray job submit` on a cluster
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.studies.adversarial import STUDY
from reconlab.sweep.study import run_study

if __name__ == "__main__":
    sys.exit(run_study(STUDY))
