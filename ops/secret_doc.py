"""Read-modify-write of the gateway's one secret, careful about a concurrent operator.

Secrets Manager has no conditional put. So a write first checks that AWSCURRENT is
still the version this command read (an operator who wrote meanwhile is not
overwritten: nothing is changed and the command says so), and afterwards that the
version it replaced is that same one (the narrow window between check and put).
(Moving AWSCURRENT with UpdateSecretVersionStage would be a true compare-and-swap,
but moto, which `make run` uses, keeps answering the old value after such a move.)

The document is `{"api_url", "api_key", "callers": [...]}` (chalicelib/secret.py);
fields this module does not know are kept as they are.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")
MAX_SECRET_BYTES = 65536  # Secrets Manager's limit on a SecretString


class OpsError(Exception):
    """An operator command could not do what was asked; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    data: dict[str, Any]
    version: str | None  # None: the secret exists but has no value yet (as CloudFormation creates it)


class SecretDocument:
    def __init__(self, client: Any, secret_id: str) -> None:
        self._client = client
        self.secret_id = secret_id

    @property
    def region(self) -> str:
        return str(self._client.meta.region_name)

    def read(self) -> Snapshot:
        errors = self._client.exceptions
        try:
            found = self._client.get_secret_value(SecretId=self.secret_id)
        except errors.ResourceNotFoundException:
            self._require_exists()
            return Snapshot({}, None)
        try:
            data = json.loads(found["SecretString"])
        except (KeyError, ValueError) as exc:
            raise OpsError(f"secret {self.secret_id} does not hold JSON; fix or overwrite it by hand") from exc
        if not isinstance(data, dict):
            raise OpsError(f"secret {self.secret_id} holds JSON that is not an object")
        return Snapshot(data, found["VersionId"])

    def update(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Apply `change` to a copy of the document and store it; returns what `change` returned."""
        snapshot = self.read()
        data = copy.deepcopy(snapshot.data)
        result = change(data)
        self._write(data, snapshot.version)
        return result

    def _write(self, data: dict[str, Any], based_on: str | None) -> None:
        text = json.dumps(data, indent=1, sort_keys=True)
        if len(text.encode()) > MAX_SECRET_BYTES:
            raise OpsError(f"the secret would hold {len(text.encode())} bytes, over Secrets Manager's "
                           f"{MAX_SECRET_BYTES}; nothing was changed: revoke keys no one uses (`callers list`)")
        if based_on is not None and self._stages().get("AWSCURRENT") != based_on:
            raise OpsError("the secret changed while this command ran (another operator?); "
                           "nothing was changed, run the command again")
        written = self._client.put_secret_value(SecretId=self.secret_id, SecretString=text)
        if based_on is not None and self._stages().get("AWSPREVIOUS") not in (based_on, None):
            raise OpsError(f"another write landed at the same moment as this one (version {written['VersionId']} "
                           "is current); check `python -m ops secret show` and `callers list` and redo what is missing")

    def _stages(self) -> dict[str, str]:
        """Staging label -> version id."""
        versions = self._client.describe_secret(SecretId=self.secret_id).get("VersionIdsToStages", {})
        return {stage: version for version, stages in versions.items() for stage in stages}

    def _require_exists(self) -> None:
        try:
            self._client.describe_secret(SecretId=self.secret_id)
        except self._client.exceptions.ResourceNotFoundException as exc:
            raise OpsError(f"no secret {self.secret_id!r} in {self.region}: is the stage deployed, "
                           "and are GATEWAY_SECRET_ID / --stage and the region right?") from exc


def fingerprint(key: str) -> str:
    """Identifies a panel key in output without revealing it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]
