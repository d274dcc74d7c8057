"""Autoscaling: the demand signals it reads (:mod:`.signals`), the pure scaling policy
(:mod:`.policy`, configured by :mod:`.config`) and the loop that ticks, decides and writes
(:mod:`.loop`).
"""
