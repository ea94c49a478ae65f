"""Losses as pure functions of tensors (GRPO, OFSD) and the teacher-forced scoring that feeds them.

Nothing here imports from train/: a recipe there builds the batches, calls these, and steps the optimizer.
"""
