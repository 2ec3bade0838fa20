import copy
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SCHEMA

from sltgeom.config import (
    ConfigError,
    all_runs,
    optimizer_variants,
    select_epochs,
    study_runs,
    validate_config,
)


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "fashion.yaml"])
def test_shipped_configs_validate(name):
    config = validate_config(yaml.safe_load((REPO / "config" / name).read_text()), SCHEMA)
    assert all_runs(config)


def test_paper_config_matches_the_original_study():
    config = validate_config(yaml.safe_load((REPO / "config/paper.yaml").read_text()), SCHEMA)
    study = config["studies"]["ngd_vs_sgd"]
    runs = study_runs("ngd_vs_sgd", study)
    assert len(runs) == 6 * 2 * 30  # (1, 2 layers) x (64, 128, 256) x (sgd, ngd) x 30 seeds
    ngd = study["optimizers"]["ngd"]
    assert (ngd["lr"], ngd["alpha"], ngd["eta"], ngd["epsilon"], ngd["delta"]) == (
        0.01, 0.01, 0.9, 1e-10, 5e-4,
    )  # fmt: skip
    assert {r["architecture"] for r in runs} == {
        f"ffnn-{layers}x{nodes}" for layers in (1, 2) for nodes in (64, 128, 256)
    }
    swap = study_runs("ngd_vs_sgd_swap", config["studies"]["ngd_vs_sgd_swap"])
    assert {r["swap_optimizer_state"] for r in swap if r["optimizer"] != "trunk"} == {"fresh"}
    transitions = study_runs("phase_transitions", config["studies"]["phase_transitions"])
    assert "cnn-k7" in {r["architecture"] for r in transitions}  # the unpadded LeNet on MNIST


def test_defaults_are_filled(tiny_config):
    del tiny_config["studies"]["tiny"]["batch_size"]
    config = validate_config(tiny_config, SCHEMA)
    assert config["studies"]["tiny"]["batch_size"] == 128
    assert config["studies"]["tiny"]["optimizers"]["sgd"]["weight_decay"] == 0.0
    assert config["mirror"] is None and config["resources"]["train"]["threads"] == 1


def test_sweep_expands_to_named_variants():
    study = {"optimizers": {"ngd": {"type": "ngd", "lr": 0.01, "alpha": [0.1, 1.0], "eta": [0.5]}}}
    assert set(optimizer_variants(study)) == {"ngd_alpha0.1_eta0.5", "ngd_alpha1.0_eta0.5"}


def test_swap_study_has_trunk_and_branches(tiny_config):
    config = validate_config(tiny_config, SCHEMA)
    runs = study_runs("tiny_swap", config["studies"]["tiny_swap"])
    spans = {r["optimizer"]: (r["start_epoch"], r["end_epoch"]) for r in runs}
    assert spans == {"trunk": (0, 1), "sgd": (1, 2), "ngd": (1, 2)}
    # branches restart with a fresh optimizer unless told to continue the trunk's state
    states = {r["optimizer"]: r.get("swap_optimizer_state") for r in runs}
    assert states == {"trunk": None, "sgd": "fresh", "ngd": "fresh"}
    tiny_config["studies"]["tiny_swap"]["swap"]["optimizer_state"] = "continue"
    config = validate_config(tiny_config, SCHEMA)
    runs = study_runs("tiny_swap", config["studies"]["tiny_swap"])
    assert {r.get("swap_optimizer_state") for r in runs if r["optimizer"] != "trunk"} == {
        "continue"
    }


def test_parsing_the_config_does_not_import_torch():
    code = (
        "import sys, yaml; from sltgeom.config import all_runs, validate_config; "
        f"all_runs(validate_config(yaml.safe_load(open({str(REPO / 'config/config.yaml')!r})), "
        f"{str(SCHEMA)!r})); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("dataset", "fits"), [("digits", False), ("mnist", True)])
def test_unpadded_cnn_must_fit_the_images(tiny_config, dataset, fits):
    study = tiny_config["studies"]["tiny"]
    study.update(dataset=dataset)
    study["architectures"].append({"type": "cnn", "extra_conv_layers": [0, 1]})
    if fits:
        assert "cnn-k1" in {
            r["architecture"] for r in all_runs(validate_config(tiny_config, SCHEMA))
        }
        return
    message = _broken(tiny_config, lambda c: None)
    assert "studies.tiny.architectures.1.type" in message
    assert "at least 16×16, got 8×8" in message and "cnn_same" in message
    study["architectures"][1]["type"] = "cnn_same"
    runs = all_runs(validate_config(tiny_config, SCHEMA))
    assert {"cnn-same-k0", "cnn-same-k1"} <= {r["architecture"] for r in runs}


def _broken(config, mutate):
    config = copy.deepcopy(config)
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    return str(err.value)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.update(bogus=1), "`bogus` is unknown"),
        (lambda c: c["studies"]["tiny"].update(epochs="ten"), "studies.tiny.epochs"),
        (lambda c: c["studies"]["tiny"]["optimizers"]["sgd"].update(lr="x"), "optimizers.sgd.lr"),
        (lambda c: c["studies"]["tiny"].update(dataset="imagenet"), "studies.tiny.dataset"),
        (lambda c: c["studies"]["tiny_swap"]["swap"].update(epoch=5), "tiny_swap.swap.epoch"),
        (lambda c: c["studies"]["tiny_swap"]["swap"].update({"from": "adam"}), "swap.from"),
        (lambda c: c["studies"]["tiny_swap"].pop("swap"), "studies.tiny_swap.swap"),
        (lambda c: c.update(device="tpu"), "`device`"),
        (lambda c: c["studies"]["tiny"]["analysis"]["llc"].update(mala="every"), "llc.mala"),
        (
            lambda c: c["studies"]["tiny"]["analysis"]["llc"].update(
                engine="devinterp", mala="same_batch"
            ),
            "studies.tiny.analysis.llc.mala",
        ),
    ],
)
def test_bad_config_names_the_key(tiny_config, mutate, key):
    assert key in _broken(tiny_config, mutate)


def analysed(config) -> dict[str, list[int]]:
    """Run folder → the epochs its analysis jobs measure."""
    return {
        f"{r['study']}/{r['architecture']}/{r['optimizer']}/{r['seed']}": select_epochs(
            r, config["studies"][r["study"]]["analysis"]["checkpoints"]
        )
        for r in all_runs(config)
    }


def test_old_analysis_epochs_key_is_read_with_a_warning(tiny_config):
    tiny_config["studies"]["tiny"]["analysis"] = {"checkpoints": [1]}
    new = validate_config(copy.deepcopy(tiny_config), SCHEMA)
    old = copy.deepcopy(tiny_config)
    old["studies"]["tiny"]["analysis"] = {"epochs": [1]}
    message = r"`studies\.tiny\.analysis\.epochs` is deprecated: it is now `studies\.tiny\.an"
    with pytest.warns(FutureWarning, match=message):
        old = validate_config(old, SCHEMA)
    assert old == new and analysed(old) == analysed(new)
    assert analysed(new)["tiny/ffnn-1x16/sgd/0"] == [1]
    both = copy.deepcopy(tiny_config)
    both["studies"]["tiny"]["analysis"] = {"epochs": [1], "checkpoints": [2]}
    keys = r"`studies\.tiny\.analysis\.epochs` and `studies\.tiny\.analysis\.checkpoints`"
    with pytest.raises(ConfigError, match=keys):
        validate_config(both, SCHEMA)


def test_old_step_size_probe_key_is_read_with_a_warning(tiny_config):
    new = validate_config(copy.deepcopy(tiny_config), SCHEMA)
    old = copy.deepcopy(tiny_config)
    probes = old["studies"]["tiny"]["probes"]
    probes["step_size"] = probes.pop("optimal_step")
    message = r"`studies\.tiny\.probes\.step_size` is deprecated: it is now `studies\.tiny\.pro"
    with pytest.warns(FutureWarning, match=message):
        assert validate_config(old, SCHEMA) == new


@pytest.mark.parametrize("name", ["minimally_singular", "lazy_training"])
def test_study_names_of_other_results_folders_are_reserved(tiny_config, name):
    tiny_config["studies"][name] = tiny_config["studies"].pop("tiny")
    with pytest.raises(ConfigError, match=rf"`studies\.{name}`: the name is reserved"):
        validate_config(tiny_config, SCHEMA)


def _optimizer(name, **settings):
    return lambda c: c["studies"]["tiny"]["optimizers"][name].update(settings)


def _architecture(**spec):
    return lambda c: c["studies"]["tiny"]["architectures"][0].update(spec)


SWEEP = "or a non-empty list, each"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _optimizer("sgd", lr=-0.1),
            "config key `studies.tiny.optimizers.sgd.lr`: -0.1 is not allowed; expected a "
            f"finite number > 0, {SWEEP} a finite number > 0",
        ),
        (_optimizer("sgd", lr=float("nan")), "sgd.lr`: .nan is not allowed; expected a finite"),
        (_optimizer("sgd", lr=[0.1, float("inf")]), "sgd.lr.1`: .inf is not allowed; expected a"),
        (_optimizer("sgd", lr="fast"), 'sgd.lr`: "fast" is not allowed; expected a finite number'),
        (_optimizer("sgd", momentum=1.5), "1.5 is not allowed; expected a finite number in [0, 1)"),
        (
            _optimizer("ngd", alpha=-1),
            "ngd.alpha`: -1 is not allowed; expected a finite number >= 0",
        ),
        (
            _optimizer("ngd", eta=0),
            "ngd.eta`: 0 is not allowed; expected a finite number in (0, 1]",
        ),
        (
            _optimizer("ngd", delta=1),
            "ngd.delta`: 1 is not allowed; expected a finite number in (0, 1)",
        ),
        (
            _optimizer("ngd", epsilon=0.0),
            "ngd.epsilon`: 0.0 is not allowed; expected a finite number > 0",
        ),
        (
            _optimizer("ngd", update_period=[4, 0]),
            "ngd.update_period.1`: 0 is not allowed; expected an integer >= 1",
        ),
        (
            _architecture(hidden_layers="one"),
            'config key `studies.tiny.architectures.0.hidden_layers`: "one" is not allowed; '
            f"expected an integer >= 0, {SWEEP} an integer >= 0",
        ),
        (
            _architecture(type="resnet"),
            'config key `studies.tiny.architectures.0.type`: "resnet" is not a known type; '
            "expected one of ffnn, dlnn, cnn, cnn_same",
        ),
        (
            lambda c: c["studies"]["tiny"]["architectures"][0].pop("type"),
            "architectures.0.type` is missing; expected one of ffnn, dlnn, cnn, cnn_same",
        ),
        (
            _architecture(hidden_nodes=0),
            "architectures.0.hidden_nodes`: 0 is not allowed; expected an integer >= 1",
        ),
        (
            lambda c: c["studies"]["tiny"]["architectures"][0].pop("hidden_nodes"),
            "architectures.0.hidden_nodes` is missing; expected",
        ),
        (
            lambda c: c["studies"]["tiny"]["analysis"].update(checkpoints={"every": 0}),
            "analysis.checkpoints.every`: 0 is not allowed; expected an integer >= 1",
        ),
        (
            lambda c: c["studies"]["tiny"]["analysis"]["llc"].update(burn_in="soon"),
            'llc.burn_in`: "soon" is not allowed; expected an integer >= 0, or auto',
        ),
        (
            lambda c: c.update(bogus=1),
            "config key `bogus` is unknown; expected one of the keys device,",
        ),
        (
            lambda c: c["studies"].update({"a b": {}}),
            "config key `studies.a b`: the name is not allowed",
        ),
    ],
)
def test_a_bad_value_is_refused_saying_what_is_allowed(tiny_config, mutate, message):
    assert message in _broken(tiny_config, mutate)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["studies"]["tiny"].update(batch_size=2000),
            "config key `studies.tiny.batch_size`: 2000 is larger than the training set of "
            "digits (1437 images); expected at most 1437",
        ),
        (
            _optimizer("sgd", momentum=[0.0, 0.9]),
            "sgd.nesterov`: true needs momentum > 0, got momentum 0.0",
        ),
        (
            lambda c: c["studies"]["tiny"]["analysis"].update(checkpoints=[1, 5]),
            "analysis.checkpoints`: epochs [5] are beyond the study's last epoch (2)",
        ),
        (
            lambda c: c["studies"]["tiny"]["analysis"].update(llc={"localization": 0.0}),
            'tiny.analysis.llc.localization`: must be > 0 with burn_in "auto", got 0.0',
        ),
        (
            lambda c: c["studies"]["tiny"]["analysis"].update(
                fisher={"histogram": {"low": 3, "high": 2}}
            ),
            "fisher.histogram`: low (3) must be less than high (2)",
        ),
        (
            lambda c: c["minimally_singular"].update(ranks=[5, 2000]),
            "`minimally_singular.ranks`: [2000] exceed the dimension 1000",
        ),
        (
            lambda c: c["lazy_training"]["linsin"].update(data={"xmin": 1.0, "xmax": 0.0}),
            "`lazy_training.linsin.data`: xmin (1.0) must be less than xmax (0.0)",
        ),
    ],
)
def test_impossible_combinations_name_both_values(tiny_config, mutate, message):
    assert message in _broken(tiny_config, mutate)


def test_defaults_are_copies_not_the_schema_s_own_objects(tiny_config):
    first = validate_config(copy.deepcopy(tiny_config), SCHEMA)
    first["report"]["dpi"] = 1
    assert validate_config(tiny_config, SCHEMA)["report"]["dpi"] == 100
