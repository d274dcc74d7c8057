"""The model runtime: one inference server for every task, used by the model images."""
