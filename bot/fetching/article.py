"""Reading the article behind a link for ``/track URL``: the guarded fetch, then extraction.

The page is fetched by a :class:`FeedFetcher`, so the same SSRF rules, size cap
and deadline apply as for feeds; its fragment (``#comments``) is dropped first,
as a browser would. Extraction (``bot.parsing.article``) runs in a thread: it
parses HTML and must not hold the event loop.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urldefrag

from bot.fetching.client import FeedFetcher
from bot.models import FeedState
from bot.parsing.article import extract_article


class ArticleReader:
    """``await read(url)`` -> ``(title, text)``; FetchError or ParseError as for feeds."""

    def __init__(self, fetcher: FeedFetcher) -> None:
        self._fetcher = fetcher

    async def read(self, url: str) -> tuple[str, str]:
        page = urldefrag(url).url
        result = await self._fetcher.fetch(page, FeedState())
        return await asyncio.to_thread(extract_article, result.body, result.headers)
