"""Adversarial attacks as plain functions of (model, x, y): FGSM (one pass
over a list of eps), the one-pixel attack by differential evolution and the
random search beside it, DAG and PGD on denoisers."""

from reconlab.attacks.denoiser import dag, pgd, pgd_denoiser
from reconlab.attacks.fgsm import accuracy_under_fgsm, fgsm, fgsm_multi
from reconlab.attacks.one_pixel import one_pixel_de, one_pixel_random

__all__ = ["accuracy_under_fgsm", "dag", "fgsm", "fgsm_multi", "one_pixel_de", "one_pixel_random", "pgd",
           "pgd_denoiser"]
