"""Training: TrainConfig, RunConfig and the jitted step (engine), the loop (train), its progress
lines and profiles, held-out evaluation, checkpoints, metrics.jsonl, signals, the workdir's
lock and record, several hosts. Imports the model and the layers below it, nothing above."""
