"""Image parts: decoding checks and SSRF-safe fetching of remote images."""
