"""Hessian-vector products of a mean training loss: :class:`sltgeom.curvature.HVPOperator`.

The curvature code serves training and analysis alike, so it lives in :mod:`sltgeom.curvature`
(products, Lanczos, flat vectors); these names stay importable from here.
"""

from sltgeom.curvature import HVPOperator, LossFn, eval_mode, iter_batches, trainable_params

__all__ = ["HVPOperator", "LossFn", "eval_mode", "iter_batches", "trainable_params"]
