"""Telegram front end: command parsing and handlers."""
