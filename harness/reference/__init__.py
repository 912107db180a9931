"""The shipped reference models (one folder each), the word-level tokenizer they share, and the
trainer that builds them (`lcbench train-reference`)."""
