"""Campaigns: a matrix of runs with expectations (matrix.py); explorations and parallel workers
land here too."""
