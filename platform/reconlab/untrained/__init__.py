"""Untrained networks as image priors: fit a deep decoder or a deep image
prior to one corrupted image (``fit``), stop without a reference
(``stopping``), and compare with classical compression (``compression``).
Pure torch: the sweep and job layers wire these in."""

from reconlab.models.deep_decoder import input_noise, input_shape, num_parameters
from reconlab.untrained.fit import FitResult, fit
from reconlab.untrained.stopping import HeldOutPixels, WindowedVariance

__all__ = ["FitResult", "HeldOutPixels", "WindowedVariance", "fit", "input_noise", "input_shape", "num_parameters"]
