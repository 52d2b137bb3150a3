"""A run's record: its folder and stats log with TensorBoard (runs), MLflow and W&B (trackers), and
its figures (plots)."""
