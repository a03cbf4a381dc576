"""Cost measurement: MACs and params, timing, memory, and the estimate of a run's time."""
