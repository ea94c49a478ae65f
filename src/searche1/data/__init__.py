"""Data formats: QA files (FlashRAG jsonl, Search-R1 parquet), corpora, the toy world generator, and where a
run's questions come from (`sources.py`: training questions and evaluation sets with their retrieval client)."""
