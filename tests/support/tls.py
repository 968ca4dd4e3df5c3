"""A throwaway certificate authority for HTTPS tests on 127.0.0.1 (``trustme``).

Certificates are made in memory for the names a test asks for; only a client context
built by :func:`client_context` trusts them, so nothing here can vouch for a real host.
"""

from __future__ import annotations

import ssl
from functools import cache

import trustme


@cache
def _authority() -> trustme.CA:
    return trustme.CA()


def server_context(*names: str) -> ssl.SSLContext:
    """A server-side context with a certificate for ``names`` (host names or IPs)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _authority().issue_cert(*names).configure_cert(context)
    return context


def client_context() -> ssl.SSLContext:
    """A verifying client context that trusts this authority and nothing else."""
    context = ssl.create_default_context()
    _authority().configure_trust(context)
    return context
