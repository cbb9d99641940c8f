"""Which channel a hub serves, and which orgs it may open there (ADR 0068: a hub serves one (org, channel)).

A hub talks to one Fabric channel. The channel is the one set explicitly (`fabric_channel`,
`LEDGERHUB_FABRIC_CHANNEL`, `ledgerhub serve --channel C`), else network.json's default `channel`, else
`billing`. When network.json records a `channels` map (network/channels.py, ADR 0067), only the orgs on the
chosen channel are opened, a hub of one org (`settings.org`) must be one of them, and a channel the map does
not name is refused. Without a map the network has one channel, its default, with every org on it.

The embedded ledger is one channel by nature: an explicit channel with `ledger=embedded` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.config import Settings

DEFAULT_CHANNEL = "billing"


class ChannelRefused(ValueError):
    """The hub cannot serve the channel its settings name; raised before any connection is opened."""


@dataclass(frozen=True)
class ChannelChoice:
    channel: str
    members: tuple[str, ...] | None  # MSP ids on the channel; None: not known (a single gateway address)


def _refuse_non_member(org: str | None, channel: str, members: Sequence[str]) -> None:
    if org is not None and org not in members:
        raise ChannelRefused(
            f"org {org} is not a member of channel {channel!r} (members: {', '.join(members)}); "
            f"run this org's hub on one of its channels (--channel) or the channel's members' hubs"
        )


def choose_channel(info: Mapping[str, Any] | None, explicit: str | None, org: str | None) -> ChannelChoice:
    """The channel a hub serves and the orgs it may open there.

    `info`: network.json (None when the hub talks to a single gateway address); `explicit`: the channel set
    in the settings (None: not set); `org`: the hub's own org (None: the all-orgs hub)."""
    if explicit is not None and not explicit.strip():
        raise ChannelRefused("fabric_channel is blank: name a channel or leave it unset")
    if info is None:
        return ChannelChoice(explicit or DEFAULT_CHANNEL, None)
    default = str(info.get("channel") or DEFAULT_CHANNEL)
    channel = explicit or default
    recorded: Mapping[str, Any] = info.get("channels") or {}
    if recorded:
        if channel not in recorded:
            raise ChannelRefused(
                f"channel {channel!r} is not a channel of this network (channels: {', '.join(recorded)})"
            )
        members = tuple(str(m) for m in recorded[channel].get("orgs", ()))
    elif channel == default:
        members = tuple(str(o["mspid"]) for o in info.get("orgs", {}).values())
    else:
        raise ChannelRefused(f"channel {channel!r} is not a channel of this network (channels: {default})")
    _refuse_non_member(org, channel, members)
    return ChannelChoice(channel, members)


def refuse_channel_on_embedded(ledger: str, explicit: str | None) -> None:
    """The embedded ledger has one channel; naming one is a configuration mistake, not something to ignore."""
    if ledger == "embedded" and explicit is not None:
        raise ChannelRefused(
            f"fabric_channel={explicit!r} (--channel) needs ledger=fabric: the embedded ledger has one "
            f"channel; unset it, or run the hub on Fabric"
        )


def check_channel(settings: Settings) -> ChannelChoice | None:
    """What `ledgerhub serve` checks before it creates anything (keys, database): the channel the settings
    name can be served by this hub. None for the embedded ledger without a channel."""
    refuse_channel_on_embedded(settings.ledger, settings.fabric_channel)
    if settings.ledger != "fabric":
        return None
    info = None
    if settings.fabric_network_dir is not None:
        path = settings.fabric_network_dir
        info = json.loads((path / "network.json" if path.is_dir() else path).read_text())
    return choose_channel(info, settings.fabric_channel, settings.org)


__all__ = [
    "DEFAULT_CHANNEL",
    "ChannelChoice",
    "ChannelRefused",
    "check_channel",
    "choose_channel",
    "refuse_channel_on_embedded",
]
