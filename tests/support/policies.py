"""Address policies for tests that let one loopback server play a public host."""

from __future__ import annotations

import ipaddress

from bot.fetching.guard import AddressPolicy, IPAddress, is_forbidden_address


def loopback_port_is_public(port: int) -> AddressPolicy:
    """The production policy, except that 127.0.0.1 on ``port`` counts as public."""

    def policy(ip: IPAddress, p: int) -> str | None:
        if ip == ipaddress.ip_address("127.0.0.1") and p == port:
            return None
        return is_forbidden_address(ip)

    return policy
