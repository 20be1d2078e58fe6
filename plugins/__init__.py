"""Built-in rnnbench plugins: cells, tasks, metrics and reporters."""
