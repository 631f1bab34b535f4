"""One training run: the loop (train), loss-weight schedules, checkpoints, validation clips."""
