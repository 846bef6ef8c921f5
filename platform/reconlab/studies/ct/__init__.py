"""The CT case study (thesis ch. 5) on ASTRA."""

from reconlab.studies.ct.study import STUDY

__all__ = ["STUDY"]
