"""The gateway: the hosted Bytez model API over ModelClusters."""
