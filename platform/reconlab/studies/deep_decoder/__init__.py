"""Untrained networks: deep decoder (Heckel & Hand) and deep image prior (Ulyanov et al.)."""

from reconlab.studies.deep_decoder.study import STUDY

__all__ = ["STUDY"]
