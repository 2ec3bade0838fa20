"""Generalisation estimate per checkpoint: Bayes generalisation error ≈ L_n(w*) + λ/n.

Watanabe's asymptotics give E[G_n] = L_n(w*) + λ/n + o(1/n) for the Bayes predictor (the seeds
divided by the batch size instead of n). The table sets it beside the observed validation loss.
"""

from __future__ import annotations

import pandas as pd

from sltgeom.schemas import CHECKPOINT_KEY, concat_conformed

KEY = list(CHECKPOINT_KEY)


def generalisation_table(llc: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """Join a study's LLC table (``loss_init``, ``llc_mean``, ``n``) with its training table."""
    frame = llc[[*KEY, "loss_init", "llc_mean", "n"]].rename(columns={"loss_init": "train_loss"})
    frame = frame.merge(training[[*KEY, "val_loss"]], on=KEY, how="left", validate="one_to_one")
    frame["gen_estimate"] = frame["train_loss"] + frame["llc_mean"] / frame["n"]
    frame["gap_estimate"] = frame["gen_estimate"] - frame["train_loss"]
    frame["gap_observed"] = frame["val_loss"] - frame["train_loss"]
    return concat_conformed([frame] if len(frame) else [], "generalisation")
