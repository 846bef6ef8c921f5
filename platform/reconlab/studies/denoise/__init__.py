"""Noise2Noise denoisers (the adversarial-denoising report and Lehtinen et al. 2018)."""

from reconlab.studies.denoise.study import STUDY

__all__ = ["STUDY"]
