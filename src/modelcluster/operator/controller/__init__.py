"""The controller machinery: the store of watched objects, the work queue and its workers,
per-cluster locks, the reconcile that applies what the builders plan, leader election and
the kopf glue.
"""
