"""Adversarial attacks as plain functions of (model, x, y)."""

from reconlab.attacks.fgsm import fgsm

__all__ = ["fgsm"]
