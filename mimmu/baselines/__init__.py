"""Baselines implemented in the same code base as MiM-MU: ESD-x and UCE."""
