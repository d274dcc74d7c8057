"""The one Kubernetes layer of the operator and the gateway.

- :mod:`~modelcluster.kube.client`: the API client (kubernetes_asyncio, plain JSON dicts in and out,
  :class:`~modelcluster.kube.client.KubeError` on failure), every call the two components make;
- :mod:`~modelcluster.kube.informer`: list-and-watch loops that feed in-memory tables;
- :mod:`~modelcluster.kube.index`: those tables (objects by the cluster they belong to);
- :mod:`~modelcluster.kube.objects`: object helpers (metadata access, keys, RFC 3339 time).

It imports :mod:`modelcluster.api` and nothing else of the project.
"""
