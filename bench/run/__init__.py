"""Running: the run configuration, the runner and its executors, the results store, stop signals."""
