"""Training: the toy warm start now; GRPO, OFSD and the self-evolution loop with their issues."""
