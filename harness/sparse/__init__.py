"""Sparse attention for any Hugging Face causal LM: mask patterns, the block list they compile
to, two prefill paths that never build an N x N matrix (a torch block loop and compiled
FlexAttention), and a KV cache bounded to what a window pattern can still attend to."""
