"""Network inversion: x* = argmin_x L(F(x), y) + R(x), batched."""

from reconlab.inversion.invert import invert
from reconlab.inversion.priors import BNStatsPrior, l2, tv

__all__ = ["BNStatsPrior", "invert", "l2", "tv"]
