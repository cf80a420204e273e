"""Index: chunking, embedding, versioned Weaviate collections behind an alias."""
