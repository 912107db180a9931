"""KV-cache compression for any Hugging Face model: the methods that score cached positions and the
cache layer that keeps the best of them."""
