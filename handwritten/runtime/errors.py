"""JetStream API error codes the runtime reacts to, and the runtime's provisioning errors.

JetStream errors are told apart by their `err_code` (nats-server's `server/errors.json`), never
by their description, which is free text that changes between server versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from nats.js.errors import APIError

# err_code values from nats-server's server/errors.json (constant name in brackets).
JETSTREAM_UNAVAILABLE: Final = 10008
"""JetStream system temporarily unavailable (JSClusterNotAvailErr): retry later."""
CONSUMER_CREATE_FAILED: Final = 10012
"""A consumer create or update was refused (JSConsumerCreateErrF), e.g. "ack policy can not be
updated"; the description says why."""
CONSUMER_NOT_FOUND: Final = 10014
"""The consumer does not exist (JSConsumerNotFoundErr)."""
NO_MESSAGE_FOUND: Final = 10037
"""No message at that sequence (JSNoMessageFoundErr): deleted, purged or aged out."""
STREAM_INVALID_CONFIG: Final = 10052
"""A stream create or update was refused (JSStreamInvalidConfigF), e.g. "can not change storage
type"; the description says why."""
STREAM_NAME_IN_USE: Final = 10058
"""A stream of that name exists with a different configuration (JSStreamNameExistErr)."""
STREAM_NOT_FOUND: Final = 10059
"""The stream does not exist (JSStreamNotFoundErr)."""
STREAM_SUBJECT_OVERLAP: Final = 10065
"""The stream's subjects overlap another stream's (JSStreamSubjectOverlapErr)."""
STORAGE_RESOURCES_EXCEEDED: Final = 10047
"""The server's JetStream storage is used up (JSStorageResourcesExceededErr)."""
MEMORY_RESOURCES_EXCEEDED: Final = 10028
"""The server's JetStream memory is used up (JSMemoryResourcesExceededErr)."""
INSUFFICIENT_RESOURCES: Final = 10023
"""The server has no resources left for the request (JSInsufficientResourcesErr)."""
STREAM_STORE_FAILED: Final = 10077
"""The stream did not store a message (JSStreamStoreFailedF): among others a `discard: new`
stream at one of its limits (max_msgs, max_bytes, max_msgs_per_subject), but also a store
that is closing; the runtime asks the stream which it was."""
REPLICAS_NOT_SUPPORTED: Final = 10074
"""More than one replica asked of a server that is not clustered (JSStreamReplicasNotSupportedErr)."""
CONSUMER_MAX_DELIVER_BACKOFF: Final = 10116
"""max_deliver is not greater than the number of backoff steps (JSConsumerMaxDeliverBackoffErr)."""


def is_jetstream_error(error: BaseException, *err_codes: int) -> bool:
    """Whether `error` is a JetStream API error with one of `err_codes`."""
    return isinstance(error, APIError) and error.err_code in err_codes


def describe_api_error(error: APIError) -> str:
    """The server's own words plus the code, for messages that end up in front of a person."""
    return f"{error.description or 'no description'} (err_code {error.err_code})"


class ProvisioningError(Exception):
    """Provisioning could not bring the server to the spec; nothing more was attempted."""


class ConfigConflict(ProvisioningError):
    """The live configuration differs from the spec in ways that cannot be changed in place.

    Raised before anything is changed; `problems` holds one sentence per refused field, each
    naming the live and spec values and the way out.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class StreamConfigConflict(ConfigConflict):
    """At least one stream differs from the spec in a field JetStream cannot change in place."""


class ConsumerConfigConflict(ConfigConflict):
    """A consumer differs from the spec in a field JetStream cannot change in place."""


class ProvisioningFailed(ProvisioningError):
    """The server refused a change the plan expected it to accept (the message says which)."""
