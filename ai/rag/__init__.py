"""RAG over a person's own documents: extract text, cut it on its structure, embed in the
background, and search it with keywords and vectors fused by rank (ai/search.rrf)."""
