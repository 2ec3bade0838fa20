"""The local learning coefficient: the estimator and its engines (:mod:`.estimate`), the
settings and presets (:mod:`.settings`), the vectorised SGLD sampler (:mod:`.sampler`, its noise
:mod:`.noise`), plain SGLD's step size and burn-in (:mod:`.schedule`), the adapted diagonal
preconditioner (:mod:`.preconditioner`), R-hat and ESS (:mod:`.convergence`, torch-free), the
ε/γ sweep (:mod:`.calibration`) and the closed-form validation suite (:mod:`.known`).

Importing the package imports nothing (the report reads :mod:`.convergence` without torch).
"""
