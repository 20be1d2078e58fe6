"""Built-in cell implementations, one module per backend."""
