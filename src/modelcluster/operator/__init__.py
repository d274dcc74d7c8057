"""The ModelCluster operator: thin kopf handlers over pure builders and a small I/O layer."""
