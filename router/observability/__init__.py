"""The ingress's metrics and their Ray instruments."""
