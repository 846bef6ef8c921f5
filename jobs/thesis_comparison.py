#!/usr/bin/env python
"""The paired comparison of the thesis's classifiers (issue 14): SGD vs Adam
vs Adam + FGSM, plain CNN vs BatchNorm CNN, softmax vs prototype heads, each
over several classifier seeds, every inversion configuration run against all
of them on the same images and scored by a verifier ensemble; a verdict with
a bootstrap interval per claim, task and objective.

    python jobs/thesis_comparison.py [--smoke-test] [--seed N] [--data-root DIR] ...
    ray job submit --working-dir . -- python jobs/thesis_comparison.py --smoke-test
"""

import os
import sys

try:
    import reconlab  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a bare checkout, e.g. under `ray job submit` on a cluster
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from reconlab.studies.thesis import STUDY
from reconlab.sweep.study import run_study

if __name__ == "__main__":
    sys.exit(run_study(STUDY))
