"""Training recipes (GRPO, OFSD, the self-evolution rounds, ablations, the toy warm start) and their kit."""
