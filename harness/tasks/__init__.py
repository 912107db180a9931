"""Tasks: deterministic long-context examples at a requested token length, and their scoring."""
