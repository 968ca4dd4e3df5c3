"""Delivering alerts: rendering to Telegram HTML and draining the outbox."""
