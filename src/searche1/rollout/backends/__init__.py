"""Generation backends behind one small interface (see base.py): HF transformers now, vLLM with its issue."""
