"""Attacks on classifiers and denoisers (the adversarial-denoising report: noise, FGSM, one-pixel, DAG; and PGD)."""

from reconlab.studies.adversarial.study import STUDY

__all__ = ["STUDY"]
