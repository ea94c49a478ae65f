"""Generation backends behind one small interface (see base.py): HF transformers and vLLM."""
