"""Network inversion of the thesis's classifiers (thesis ch. 2-3): the main job."""

from reconlab.studies.inversion.study import STUDY

__all__ = ["STUDY"]
