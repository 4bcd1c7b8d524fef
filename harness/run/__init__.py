"""One run's machinery: its configuration, the lifecycle controller, the clients, the history
recorder and the run directory (store)."""
