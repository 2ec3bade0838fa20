"""Workflow configuration: schema validation with defaults, and expansion of studies into runs.

A study names its dataset, protocol, architectures, optimizers, seeds and epochs. A list in an
architecture size or an optimizer hyperparameter makes a sweep (the Cartesian product); an MLP's
``widths`` list is one architecture (its hidden widths), not a sweep. Sweep variants are named
after what varies, e.g. ``ngd_alpha0.1`` or ``ngd_alpha0.1_eta0.5``. A study's ``probes``
(measurements inside the training job) travel in its runs: ``run["optimal_step"]`` holds the
optimal-step probe's settings for the probed architectures and is absent otherwise.

``standard`` protocol: every optimizer variant trains from the same seed-controlled initial
weights. ``swap`` protocol: the ``swap.from`` optimizer trains a ``trunk`` run to ``swap.epoch``,
then every optimizer variant (the ``from`` one included) continues from that checkpoint with a
fresh optimizer, or (``swap.optimizer_state: continue``) the ``from`` one with the trunk's
optimizer state; the branch runs carry the setting as ``run["swap_optimizer_state"]``.
"""

from __future__ import annotations

import copy
import functools
import itertools
import warnings
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import yaml

from .analysis.llc.settings import llc_settings
from .architectures import LENETS, architecture_name, lenet_features
from .config_errors import TYPE_CHECKER, explain, show
from .data.registry import DATASETS
from .layout import RESERVED_STUDIES, TRUNK

ARCH_SIZES = ("hidden_layers", "hidden_nodes", "extra_conv_layers")
# Keys of a study renamed since: (block, old name, new name); the old one is still read.
RENAMED = (("analysis", "epochs", "checkpoints"), ("probes", "step_size", "optimal_step"))


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


def _with_defaults(validator_class):
    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:  # a copy: the schema is shared by every validation
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validator_class.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(
        validator_class, {"properties": set_defaults}, type_checker=TYPE_CHECKER
    )


_VALIDATOR = _with_defaults(jsonschema.Draft202012Validator)


@functools.lru_cache(maxsize=4)
def _schema(path: str, modified: int) -> dict:
    return yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_schema(schema_path: str | Path) -> dict:
    """The parsed schema (read once per version of the file)."""
    path = Path(schema_path).resolve()
    return _schema(str(path), path.stat().st_mtime_ns)


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate ``config`` in place against the JSON schema, fill defaults, check combinations.
    The first problem is one :class:`ConfigError` naming the key, the value and what is allowed
    (:mod:`sltgeom.config_errors`)."""
    schema = load_schema(schema_path)
    _rename_old_keys(config)
    errors = _VALIDATOR(schema).iter_errors(config)
    first = min(errors, key=lambda e: [str(p) for p in e.absolute_path], default=None)
    if first is not None:
        raise ConfigError(explain(first, schema, config))
    for name, study in config["studies"].items():
        _check_study(name, study)
    _check_other_parts(config)
    return config


def _rename_old_keys(config: dict) -> None:
    """Read each renamed key under its new name, with a warning (a FutureWarning: unlike a
    DeprecationWarning, Python shows it to the user by default); both names given is an error."""
    studies = config.get("studies")
    for name, study in studies.items() if isinstance(studies, dict) else ():
        for block, old, new in RENAMED:
            section = study.get(block) if isinstance(study, dict) else None
            if not isinstance(section, dict) or old not in section:
                continue
            where = f"studies.{name}.{block}"
            if new in section:
                raise ConfigError(
                    f"config keys `{where}.{old}` and `{where}.{new}`: one setting given twice "
                    f"(`{old}` is the old name of `{new}`); keep `{new}` only"
                )
            message = f"config key `{where}.{old}` is deprecated: it is now `{where}.{new}`"
            # attributed to validate_config: Python drops a warning attributed to a Snakefile
            warnings.warn(message, FutureWarning, stacklevel=2)
            section[new] = section.pop(old)


def _check_study(name: str, study: Mapping) -> None:
    where = f"studies.{name}"
    if name in RESERVED_STUDIES:
        raise ConfigError(
            f"config key `studies.{name}`: the name is reserved (results/{name}/ holds "
            f"another part of the workflow); choose another"
        )
    if TRUNK in study["optimizers"]:
        raise ConfigError(f"config key `{where}.optimizers.{TRUNK}`: the name is reserved")
    llc = study.get("analysis", {}).get("llc", {})
    if llc.get("engine") == "devinterp" and llc.get("mala") == "same_batch":
        raise ConfigError(f"config key `{where}.analysis.llc.mala`: same_batch needs engine: fast")
    for check in (_check_optimal_step, _check_input_sizes, _check_sizes, _check_analysis):
        check(where, study)
    _check_transition(where, name, study)
    if study["protocol"] != "swap":
        if "swap" in study:
            raise ConfigError(f"config key `{where}.swap`: only used with `protocol: swap`")
        return
    swap = study.get("swap")
    if swap is None:
        raise ConfigError(f"config key `{where}.swap`: required with `protocol: swap`")
    if not 1 <= swap["epoch"] < study["epochs"]:
        raise ConfigError(
            f"config key `{where}.swap.epoch`: {swap['epoch']} must lie in "
            f"[1, epochs - 1] = [1, {study['epochs'] - 1}]"
        )
    source = study["optimizers"].get(swap["from"])
    if source is None:
        raise ConfigError(f"config key `{where}.swap.from`: no optimizer named {swap['from']!r}")
    if len(_variants(swap["from"], source)) != 1:
        raise ConfigError(f"config key `{where}.swap.from`: the trunk optimizer cannot be a sweep")


def _check_input_sizes(where: str, study: Mapping) -> None:
    """Every LeNet of the study fits its data set's images (the unpadded ``cnn`` needs 16×16)."""
    shape = DATASETS[study["dataset"]].input_shape
    for i, arch in enumerate(study["architectures"]):
        if arch["type"] in LENETS:
            try:
                lenet_features(arch["type"], shape)
            except ValueError as error:
                raise ConfigError(
                    f"config key `{where}.architectures.{i}.type`: {error} "
                    f"(dataset {study['dataset']})"
                ) from None


def _refuse(where: str, problem: str) -> None:
    raise ConfigError(f"config key `{where}`: {problem}")


def _check_sizes(where: str, study: Mapping) -> None:
    """The batch fits the training set; Nesterov momentum has a momentum (in every variant)."""
    n_train = DATASETS[study["dataset"]].n_train
    if study["batch_size"] > n_train:
        problem = (
            f"{study['batch_size']} is larger than the training set of {study['dataset']} "
            f"({n_train} images); expected at most {n_train} (full-batch training)"
        )
        _refuse(f"{where}.batch_size", problem)
    for name, settings in study["optimizers"].items():
        for variant in _variants(name, settings).values():
            if variant["nesterov"] and not variant["momentum"] > 0:
                problem = f"true needs momentum > 0, got momentum {show(variant['momentum'])}"
                _refuse(f"{where}.optimizers.{name}.nesterov", problem)


def _check_analysis(where: str, study: Mapping) -> None:
    """Listed checkpoints exist in the study; the LLC sampler settings (preset and overrides)
    are ones a job can run; the Fisher histogram's edges are in order."""
    analysis = study["analysis"]
    listed = analysis["checkpoints"] if isinstance(analysis["checkpoints"], list) else []
    beyond = sorted(e for e in set(listed) if e > study["epochs"])
    if beyond:
        problem = f"epochs {beyond} are beyond the study's last epoch ({study['epochs']})"
        _refuse(
            f"{where}.analysis.checkpoints", f"{problem}; expected epochs in [0, {study['epochs']}]"
        )
    _check_llc(f"{where}.analysis.llc", analysis["llc"])
    histogram = analysis["fisher"]["histogram"]
    if not histogram["low"] < histogram["high"]:
        problem = f"low ({histogram['low']}) must be less than high ({histogram['high']})"
        _refuse(f"{where}.analysis.fisher.histogram", problem)


def _check_llc(where: str, block: Mapping) -> None:
    """What :class:`LLCSettings` refuses (e.g. localization 0 with burn_in auto), named here."""
    if not block["enabled"]:
        return
    try:
        llc_settings(block, seed=block["seed"])
    except ValueError as error:
        name, _, problem = str(error).removeprefix("LLCSettings.").partition(" ")
        _refuse(f"{where}.{name}", problem)


def _check_other_parts(config: Mapping) -> None:
    """The minimally singular model's ranks fit its dimension; intervals of the lazy-training
    data and feature dimensions are in order."""
    toy = config["minimally_singular"]
    if toy is not None:
        _check_llc("minimally_singular.llc", toy["llc"])
        too_large = [r for r in toy["ranks"] if r > toy["dimension"]]
        if too_large:
            problem = f"{too_large} exceed the dimension {toy['dimension']}"
            _refuse("minimally_singular.ranks", f"{problem}; expected ranks <= dimension")
    for name, experiment in (config["lazy_training"] or {}).items():
        for block, low, high in (("data", "xmin", "xmax"), ("feature_dims", "start", "stop")):
            _check_order(f"lazy_training.{name}.{block}", (experiment or {}).get(block), low, high)


def _check_order(where: str, block: Mapping | None, low: str, high: str) -> None:
    if block is not None and not block[low] < block[high]:
        _refuse(where, f"{low} ({show(block[low])}) must be less than {high} ({show(block[high])})")


def _check_transition(where: str, name: str, study: Mapping) -> None:
    """A study's ``transition: {before, after}`` names two analysed checkpoints, in order."""
    chosen = study.get("transition")
    if chosen is None:
        return
    before, after = chosen["before"], chosen["after"]
    if not before < after:
        raise ConfigError(
            f"config key `{where}.transition`: before ({before}) must be less than after ({after})"
        )
    selection = study.get("analysis", {}).get("checkpoints", "all")
    analysed = sorted({e for run in study_runs(name, study) for e in select_epochs(run, selection)})
    for key, epoch in (("before", before), ("after", after)):
        if epoch not in analysed:
            raise ConfigError(
                f"config key `{where}.transition.{key}`: epoch {epoch} is not an analysed "
                f"checkpoint of the study (analysis.checkpoints gives {analysed})"
            )


def select_epochs(run: Mapping, selection) -> list[int]:
    """Epochs of ``run`` to analyse: ``"all"``, a list, or ``{"every": k}`` (multiples of k
    and the last epoch). A swap branch skips its first epoch, the trunk's last checkpoint."""
    first = run["start_epoch"] + (run["protocol"] == "swap" and run["optimizer"] != TRUNK)
    last = run["end_epoch"]
    span = range(first, last + 1)
    if selection == "all":
        return list(span)
    if isinstance(selection, Mapping):
        every = selection["every"]
        return [e for e in span if e % every == 0 or e == last]
    return sorted(e for e in set(selection) if first <= e <= last)


def _check_optimal_step(where: str, study: Mapping) -> None:
    probe = study.get("probes", {}).get("optimal_step")
    if probe is None:
        return
    unknown = set(probe["architectures"] or ()) - set(architectures(study))
    if unknown:
        raise ConfigError(
            f"config key `{where}.probes.optimal_step.architectures`: {sorted(unknown)} not among "
            f"the study's architectures {sorted(architectures(study))}"
        )


def optimal_step_probe(study: Mapping, architecture: str) -> dict | None:
    """The optimal-step probe settings of one architecture of a study, or None (not probed)."""
    probe = study.get("probes", {}).get("optimal_step")
    if probe is None or architecture not in (probe["architectures"] or [architecture]):
        return None
    return {k: v for k, v in probe.items() if k != "architectures"}


def _product(spec: Mapping, keys) -> list[tuple[dict, dict]]:
    """(concrete spec, swept values) for every combination of the list-valued ``keys``."""
    swept = [k for k in keys if isinstance(spec.get(k), list)]
    combos = [
        dict(zip(swept, c, strict=True)) for c in itertools.product(*(spec[k] for k in swept))
    ]
    return [({**spec, **varied}, varied) for varied in combos]


def _variants(name: str, settings: Mapping) -> dict[str, dict]:
    out = {}
    for concrete, varied in _product(settings, [k for k in settings if k != "type"]):
        suffix = "".join(f"_{k}{v}" for k, v in varied.items())
        out[name + suffix] = concrete
    return out


def architectures(study: Mapping) -> dict[str, dict]:
    specs = [spec for arch in study["architectures"] for spec, _ in _product(arch, ARCH_SIZES)]
    return {architecture_name(spec): spec for spec in specs}


def optimizer_variants(study: Mapping) -> dict[str, dict]:
    return {k: v for name, s in study["optimizers"].items() for k, v in _variants(name, s).items()}


def canonical(value):
    """Dicts with sorted keys, recursively: Snakemake compares params by their text, so reordering
    keys in the YAML must not look like a change."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    return value


def _run(study_name, study, arch, arch_spec, opt, opt_spec, seed, start, end) -> dict:
    probe = optimal_step_probe(study, arch)  # only probed runs carry the key
    return canonical(
        {
            **({"optimal_step": probe} if probe is not None else {}),
            "study": study_name,
            "architecture": arch,
            "optimizer": opt,
            "seed": seed,
            "dataset": study["dataset"],
            "protocol": study["protocol"],
            "arch_spec": arch_spec,
            "optim_spec": opt_spec,
            "batch_size": study["batch_size"],
            "start_epoch": start,
            "end_epoch": end,
        }
    )


def study_runs(name: str, study: Mapping) -> list[dict]:
    """Every training run of one study (trunks of swap studies included)."""
    optims = optimizer_variants(study)
    swap = study.get("swap") if study["protocol"] == "swap" else None
    start = swap["epoch"] if swap else 0
    runs = []
    for (arch, spec), seed in itertools.product(architectures(study).items(), study["seeds"]):
        if swap:
            trunk_spec = study["optimizers"][swap["from"]]
            runs.append(_run(name, study, arch, spec, TRUNK, trunk_spec, seed, 0, start))
        for opt, opt_spec in optims.items():
            run = _run(name, study, arch, spec, opt, opt_spec, seed, start, study["epochs"])
            if swap:
                state = swap.get("optimizer_state", "fresh")  # the schema's default
                run = canonical({**run, "swap_optimizer_state": state})
            runs.append(run)
    return runs


def all_runs(config: Mapping) -> list[dict]:
    return [run for name, study in config["studies"].items() for run in study_runs(name, study)]
