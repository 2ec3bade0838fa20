"""LLC sampler settings: :class:`LLCSettings` (validated on construction) and the presets a
config's ``analysis.llc`` block starts from (:func:`llc_settings`). docs/llc.md explains the
defaults and the validation behind them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

ENGINES = ("fast", "devinterp")
SAMPLERS = ("sgld", "sgnht")
MALA_MODES = ("consecutive", "same_batch")
INIT_LOSSES = ("full", "devinterp")
AUTO = "auto"
ADAPTED = ("diagonal", "eigenbasis")  # preconditioners adapted during the burn-in
PRECONDITIONERS = (AUTO, "none", *ADAPTED)


@dataclass(frozen=True)
class LLCSettings:
    """Sampler settings. The defaults pass the known-λ validation suite (docs/llc.md).

    step_size: a number, or ``"auto"``: decided per checkpoint from the top Hessian eigenvalue
    and a pilot's same-batch MALA acceptance (:mod:`.schedule`; ``step_scale``,
    ``min_acceptance``), checked again by pilots from the chains' states during the burn-in
    (fast engine) and frozen for the draws. burn_in: a number of steps, or ``"auto"``: a
    diffusion time ``burn_in_scale``/γ (``burn_in_scale``/(εγ) steps at a constant ε), the time
    for the chains to spread to the localization radius along flat directions, capped at
    ``max_burn_in`` steps. A chain whose loss becomes non-finite is retried with ε/4 up to
    ``max_retries`` times.
    nbeta: None → n/ln n, "batch" → B/ln B, or a positive number. diffusion_factor is SGNHT's A.
    mala: how SGLD moves are scored. ``"consecutive"`` (devinterp's convention) compares the
    losses of two consecutive steps, i.e. of two different minibatches, so on real data the
    acceptance also measures minibatch noise; ``"same_batch"`` (fast engine) scores each draw
    move on the minibatch that made it, at the cost of a second gradient per draw, so the
    acceptance measures the step's discretisation error alone.
    init_loss: L(w*) on the ``"full"`` training set, or ``"devinterp"``: the mean over
    ``chains`` seeded minibatches, as devinterp computes it by default (the seeds' notebooks).
    preconditioner: ``"none"`` (plain SGLD), ``"diagonal"``: a per-parameter preconditioner
    adapted during the burn-in and frozen for the draws (:mod:`.preconditioner`; fast engine,
    SGLD, automatic ε and burn-in), ``"eigenbasis"``: the same in each layer's input eigenbasis
    (:mod:`.basis`: an orthogonal change of coordinates, so the same posterior and λ̂, in which
    correlated inputs are no longer ill-conditioned), or ``"auto"``: eigenbasis where it
    applies, else none (:meth:`resolve_preconditioner`); once the adaptation has settled the
    chains run ``settle`` × its steps more under the frozen kernel before the draws, and the
    draws span at least ``draw_time`` units of preconditioned time (draws·thin·ε ≥ draw_time:
    one step in every thin is a draw; :func:`.preconditioner.draw_thin`).
    """

    sampler: str = "sgld"
    chains: int = 4
    draws: int = 2000
    burn_in: int | str = "auto"
    step_size: float | str = "auto"
    localization: float = 1.0
    nbeta: float | str | None = None
    batch_size: int = 512
    seed: int = 0
    diffusion_factor: float = 0.01
    mala: str = "same_batch"
    step_scale: float = 0.25
    min_acceptance: float = 0.95
    burn_in_scale: float = 0.2
    max_burn_in: int = 50_000
    max_retries: int = 3
    init_loss: str = "full"
    preconditioner: str = AUTO
    settle: float = 0.25
    draw_time: float = 125.0

    def __post_init__(self):
        _check(self.sampler in SAMPLERS, "sampler", f"one of {SAMPLERS}", self.sampler)
        _check(self.mala in MALA_MODES, "mala", f"one of {MALA_MODES}", self.mala)
        _check(self.init_loss in INIT_LOSSES, "init_loss", f"one of {INIT_LOSSES}", self.init_loss)
        pre, allowed = self.preconditioner, f"one of {PRECONDITIONERS}"
        _check(pre in PRECONDITIONERS, "preconditioner", allowed, pre)
        counts = (("chains", 1), ("draws", 2), ("batch_size", 1), ("max_burn_in", 1))
        for name, low in (*counts, ("max_retries", 0), ("seed", 0)):
            value = getattr(self, name)
            _check(_is_int(value) and value >= low, name, f"an integer >= {low}", value)
        burn_ok = self.burn_in == AUTO or (_is_int(self.burn_in) and self.burn_in >= 0)
        _check(burn_ok, "burn_in", f'an integer >= 0 or "{AUTO}"', self.burn_in)
        step_ok = self.step_size == AUTO or _positive(self.step_size)
        _check(step_ok, "step_size", f'a finite number > 0 or "{AUTO}"', self.step_size)
        for name in ("step_scale", "burn_in_scale", "diffusion_factor"):
            _check(_positive(getattr(self, name)), name, "a finite number > 0", getattr(self, name))
        accept_ok = _is_real(self.min_acceptance) and 0 <= self.min_acceptance < 1
        _check(accept_ok, "min_acceptance", "a number in [0, 1)", self.min_acceptance)
        for name in ("settle", "draw_time", "localization"):
            value = getattr(self, name)
            ok = _is_real(value) and 0 <= value < math.inf
            _check(ok, name, "a finite number >= 0", value)
        if self.burn_in == AUTO:
            _check(self.localization > 0, "localization", f'> 0 with burn_in "{AUTO}"', 0.0)
        if self.step_size == AUTO:
            needs = f'"sgld" with step_size "{AUTO}"'
            _check(self.sampler == "sgld", "sampler", needs, self.sampler)
        nb_ok = self.nbeta is None or self.nbeta == "batch" or _positive(self.nbeta)
        _check(nb_ok, "nbeta", 'None, "batch" or a finite number > 0', self.nbeta)

    def adaptable(self, engine: str) -> bool:
        """Can a preconditioner be adapted: fast engine, SGLD, automatic ε and burn-in?"""
        auto = self.step_size == AUTO and self.burn_in == AUTO
        return engine == "fast" and self.sampler == "sgld" and auto

    def resolve_preconditioner(self, engine: str) -> LLCSettings:
        """These settings with ``"auto"`` resolved: ``"eigenbasis"`` if :meth:`adaptable`."""
        if self.preconditioner != AUTO:
            return self
        return replace(self, preconditioner="eigenbasis" if self.adaptable(engine) else "none")

    def resolve_nbeta(self, n: int) -> float:
        """nβ actually used for a training set of n points: n/ln n, B/ln B or the given value."""
        if self.nbeta is None:
            return _n_over_log_n(n, "n")
        if self.nbeta == "batch":
            return _n_over_log_n(min(self.batch_size, n), "batch_size")
        return float(self.nbeta)


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _positive(v) -> bool:
    return _is_real(v) and 0 < v < math.inf


def _check(ok: bool, name: str, expected: str, value) -> None:
    if not ok:
        raise ValueError(f"LLCSettings.{name} must be {expected}, got {value!r}")


def _n_over_log_n(n: int, name: str) -> float:
    if n < 2:
        raise ValueError(f"nbeta = {name}/ln({name}) needs {name} >= 2, got {n}")
    return n / math.log(n)


# Unset sampler keys come from a preset: the validated defaults of LLCSettings (docs/llc.md;
# "calibrated" is their old name), or the original notebooks' settings (notebooks 000/001:
# devinterp's SGLD with lr 1e-4, localization 100, its default nbeta B/ln B at batch 128, 1000
# draws of 1 chain, no burn-in, devinterp's own initial loss), kept for comparison with the paper.
LLC_PRESETS = {
    "validated": {},
    "calibrated": {},
    "seeds": {
        "step_size": 1e-4,
        "localization": 100.0,
        "nbeta": "batch",
        "draws": 1000,
        "chains": 1,
        "burn_in": 0,
        "batch_size": 128,
        "init_loss": "devinterp",
        "mala": "consecutive",
        "preconditioner": "none",
    },
}


def llc_settings(settings: Mapping, seed: int) -> LLCSettings:
    """:class:`LLCSettings` from the preset, overridden by the keys set in ``settings``.

    devinterp scores MALA only on consecutive steps, so with ``engine: devinterp`` an unset
    ``mala`` is ``consecutive``."""
    names = {f.name for f in fields(LLCSettings)} - {"seed"}
    given = {k: v for k, v in settings.items() if k in names}
    preset = LLC_PRESETS[settings.get("preset", "validated")]
    if settings.get("engine") == "devinterp":
        preset = {"mala": "consecutive", **preset}
    return LLCSettings(**{**preset, **given}, seed=seed)
