"""Storywatch: watch news feeds and alert Telegram chats when followed storylines move."""

__version__ = "0.1.0"
