"""Data formats: QA files (FlashRAG jsonl, Search-R1 parquet), corpora, and the toy world generator."""
