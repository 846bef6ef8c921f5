"""The thesis's classifiers compared paired (thesis ch. 2-4, issue 14)."""

from reconlab.studies.thesis.study import STUDY

__all__ = ["STUDY"]
