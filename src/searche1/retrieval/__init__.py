"""Retrieval: BM25 (bm25s) and dense (sentence-transformers + faiss) indexes, the /retrieve server, clients."""
