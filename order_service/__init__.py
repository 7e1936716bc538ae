"""The reference order service: the order-system contract (shop/orders/contract.py,
docs/order-api.md) served from a real SQLite database, with seeded demo orders for the demo
shops. Run by scripts/run-local.sh and the integration tests on a loopback port; a shop
integrating its own order system implements the same two calls."""
