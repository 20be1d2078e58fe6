"""Built-in tasks, one module per input/output topology."""
