"""Figures and the HTML report, built from the Parquet tables alone (docs/tables.md).

No module here imports torch or loads a checkpoint: a study's figures need only its tables and
a :class:`~sltgeom.report.study.StudySpec` (optimizer types, swap point, seeds) from the config.
"""
