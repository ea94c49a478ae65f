"""Rollouts: the trajectory record, the multi-turn engine and the generation backends."""
