#!/usr/bin/env python
"""Deep decoder and deep image prior fits (Heckel & Hand; Ulyanov et al.) on Ray Tune + Optuna, tracked in MLflow.

    python jobs/deep_decoder_sweep.py [--smoke-test] [--num-samples N] ...
    ray job submit --working-dir . -- python jobs/deep_decoder_sweep.py --smoke-test
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout, e.g. under `ray job submit` on a cluster
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.studies.deep_decoder import STUDY
from reconlab.sweep.study import run_study

if __name__ == "__main__":
    sys.exit(run_study(STUDY))
