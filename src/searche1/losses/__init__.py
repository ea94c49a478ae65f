"""Losses as pure functions of tensors (GRPO, OFSD) and the teacher-forced scoring they take their inputs from.

Nothing here imports from train/: a recipe there builds the batches, calls these, and steps the optimizer.
"""
