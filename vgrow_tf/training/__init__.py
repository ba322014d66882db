"""What every model shares: options, run dir, ticks, schedule, EMA, checkpoints, strategy, loop."""
