"""ModelCluster: serverless model inference on your own Kubernetes cluster."""

__version__ = "0.1.0"
