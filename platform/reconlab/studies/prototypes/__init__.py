"""Prototype heads, hyperspherical and hyperbolic (thesis ch. 4)."""

from reconlab.studies.prototypes.study import STUDY

__all__ = ["STUDY"]
