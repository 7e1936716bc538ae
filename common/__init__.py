"""Helpers shared by the router, the model server and the load tests (no imports upward)."""
