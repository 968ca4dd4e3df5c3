"""Turning feed bytes into normalised items."""
