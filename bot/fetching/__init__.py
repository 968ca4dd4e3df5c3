"""Fetching feeds over HTTP: the SSRF guard, conditional requests and the shared client."""
