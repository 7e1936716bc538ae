"""Who may call the API and how much: API keys (api_keys.py) and per-key rate limits
(rate_limits.py). Both are decided before a request body is read."""
