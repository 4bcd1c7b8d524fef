"""What a person reads: a run's analysis (every checker), its pages, the summary table, two runs
compared, and the store served in a browser."""
