#!/usr/bin/env python
"""Noise2Noise denoisers (three noise models; noisy vs clean targets; annealed L0 vs L2; a PGD-defended denoiser),
each trained by Ray Train inside a Ray Tune + Optuna trial, tracked in MLflow.

    python jobs/denoise_sweep.py [--smoke-test] [--num-samples N] [--search-space search_spaces/denoise.yaml] ...
    ray job submit --working-dir . -- python jobs/denoise_sweep.py --smoke-test
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout, e.g. under `ray job submit` on a cluster
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.studies.denoise import STUDY
from reconlab.sweep.study import run_study

if __name__ == "__main__":
    sys.exit(run_study(STUDY))
