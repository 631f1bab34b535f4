"""A search's report: tables and plots from what MLflow and the checkpoints hold."""
