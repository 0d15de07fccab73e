"""Azure Table keys: PartitionKey/RowKey may not contain / \\ # ? or control characters and are at most
1 KiB. We escape anything outside a safe set as `~XX` (UTF-8 bytes, hex), which is reversible, keeps
ordinary ids readable, and sorts stably; over-long keys keep a readable prefix plus a hash."""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9\-_.:@ =+,;!$()*]")
MAX_KEY_CHARS = 512  # 1 KiB in UTF-16, the service's limit, with every char counted as two bytes


def encode_key(value: str) -> str:
    """Encode any string into a valid, reversible Table key (unless it is very long: then hashed)."""
    out = []
    for char in value:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode("utf-8"))
    encoded = "".join(out)
    if len(encoded) > MAX_KEY_CHARS:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        encoded = f"{encoded[: MAX_KEY_CHARS - 70]}~~{digest}"
    return encoded


def decode_key(encoded: str) -> str:
    """Invert `encode_key` (hashed keys cannot be inverted: they raise ValueError)."""
    if "~~" in encoded:
        raise ValueError("key was shortened with a hash and cannot be decoded")
    data = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "~":
            data.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            data.extend(encoded[i].encode("utf-8"))
            i += 1
    return data.decode("utf-8")
