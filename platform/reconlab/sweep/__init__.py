"""Sweeps: a YAML search space, validated before Ray starts, run by Ray Tune
with seeded Optuna TPE and ASHA, tracked in MLflow."""
