"""TorchServe's token authorization, from a client's side.

TorchServe (token authorization on, its default) writes key_file.json into its working directory with
three keys: inference, management and an API key whose only use is to mint a new inference or
management key when one expires (after token_expiration_min). Clients read the file, not a copy, so a
renewed key is picked up at once.
"""

import json
from pathlib import Path

import aiohttp


class KeyFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._mtime = None
        self._keys = {}

    def key(self, kind: str) -> str | None:
        """'inference', 'management' or 'API'; None when token authorization is off (no key file)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime != self._mtime:
            try:
                doc = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                return self._keys.get(kind)  # caught mid-write: the previous keys are still the best bet
            self._keys = {name: entry.get("key") for name, entry in doc.items() if isinstance(entry, dict)}
            self._mtime = mtime
        return self._keys.get(kind)

    def headers(self, kind: str) -> dict:
        key = self.key(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def renew(self, session: aiohttp.ClientSession, management_url: str, kind: str) -> bool:
        """Ask TorchServe for a new key of this kind ('inference' or 'management'); it rewrites the file."""
        url = f"{management_url}/token"
        async with session.get(url, params={"type": kind}, headers=self.headers("API")) as response:
            return response.status == 200
