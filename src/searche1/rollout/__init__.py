"""Rollouts: the trajectory record (and, with the rollout-engine issue, the multi-turn engine and backends)."""
