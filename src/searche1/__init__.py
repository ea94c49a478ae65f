"""searche1: the Search-E1 recipe (GRPO + offline self-distillation) on the Search-R1 protocol."""

__version__ = "0.1.0"
