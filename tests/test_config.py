import copy

import pytest
import yaml
from conftest import REPO, SCHEMA

from sltgeom.config import ConfigError, all_runs, optimizer_variants, study_runs, validate_config


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
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
    spans = {r["optimizer"]: (r["start_epoch"], r["epochs"]) for r in runs}
    assert spans == {"trunk": (0, 1), "sgd": (1, 2), "ngd": (1, 2)}


def _broken(config, mutate):
    config = copy.deepcopy(config)
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    return str(err.value)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.update(bogus=1), "`<config>`"),
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
