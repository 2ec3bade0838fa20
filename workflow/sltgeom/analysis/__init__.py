"""Analysis stage: LLC, Hessian and Fisher of trained checkpoints, the minimally singular model.

Torch-free, so that the workflow can read :data:`MEASURE_MODULES` when it is parsed.
"""

#: Module holding ``measure_<kind>`` for each per-checkpoint analysis (imported by name, only by
#: the jobs of that kind: sltgeom/analysis/measurement.py).
MEASURE_MODULES = {
    "llc": "sltgeom.analysis.measure",
    "hessian": "sltgeom.analysis.hessian",
    "fisher": "sltgeom.analysis.fisher",
}
