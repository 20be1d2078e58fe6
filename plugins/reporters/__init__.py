"""Built-in reporters: the formats result tables are written in."""
