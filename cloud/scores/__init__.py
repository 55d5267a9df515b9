"""What the daily scoring jobs (churn, upgrade) share: settings loading, the training/loading/storing steps of
a run, reading stored scores and the CLI's printing. Each job keeps its own features, label, score table and
tiers or thresholds, and passes them in; nothing here imports a job."""
