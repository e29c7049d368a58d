"""The API versions Marconi serves and, in one table, everything that differs between them.

v2 is Zaqar's current API; v1.1 and v1.0 are Marconi's original ones, still spoken by old
clients (python-zaqarclient ≤ 3.0.1 ``version=1`` / ``version=1.1``) and scripts. All three
run the same commands and queries; the route modules (``service.queues`` ... for v2,
``service.v1`` for v1.x) only translate the wire format, and every wire difference they
honour is a field here, so a reader can see what "v1.0" means without reading handlers.
Upstream's v1.0 and v1.1 transports (``zaqar/transport/wsgi/v1_0``, ``v1_1``) are the source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The global namespace of v1.0, which lets a request go without X-Project-ID. v2 and v1.1
# refuse an empty X-Project-ID, so no other request can reach it.
GLOBAL_PROJECT = ""


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """One API version: its identity in ``GET /`` and the rules its routes follow."""

    id: str  # the spelling of ``enable_api_versions`` and of ``GET /`` ("1", "1.1", "2")
    prefix: str  # path prefix, also of every href and Location ("/v1", "/v1.1", "/v2")
    status: str  # CURRENT or DEPRECATED, as upstream lists it
    updated: str
    media_type: str

    # -- the request pipeline (service.middleware) -----------------------------------
    client_id_required: bool = True  # False: Client-ID is only UUID-checked when present
    project_required: bool = True  # False: no X-Project-ID means GLOBAL_PROJECT

    # -- queues ----------------------------------------------------------------------
    metadata_resource: bool = False  # metadata at …/metadata (GET/PUT), not on the queue
    lazy_queues: bool = True  # False: posting to, stats of, metadata of a missing queue 404
    empty_status: int = 200  # an empty queue/message listing or bulk get: 204 in v1.0
    content_location: bool = False  # v1.0 answers reads with Content-Location

    # -- messages --------------------------------------------------------------------
    bare_arrays: bool = False  # v1.0: posts, bulk gets and claims are bare JSON arrays
    ttl_required: bool = False  # v1.0: every posted message names its ttl
    post_partial: bool = False  # v1.0 post results carry "partial": false
    message_ids: bool = True  # message objects carry "id" (v1.0: only the href has it)
    listed_claim_ids: bool = True  # listed/fetched hrefs carry ?claim_id= (v1.0: only claims)
    checksums: bool = True  # enable_checksum adds "checksum" (not in v1.0)
    pop: bool = True  # DELETE …/messages?pop=N and ?ids= without claims (v1.1+)

    # -- claims ----------------------------------------------------------------------
    claim_body_required: bool = False  # v1.0: POST needs ttl and grace, PATCH needs ttl
    patch_grace_default: int | None = None  # v1.0 PATCH grace default 0; None: the setting

    # -- service endpoints -----------------------------------------------------------
    health_open: bool = False  # v1.1 health had no policy check (admin_mode still needed)

    @property
    def entry(self) -> dict[str, object]:
        """This version's entry in the version list (``GET /``)."""
        return {"id": self.id, "status": self.status, "updated": self.updated,
                "media-types": [{"base": "application/json", "type": self.media_type}],
                "links": [{"href": f"{self.prefix}/", "rel": "self"}]}


V1_0 = ApiVersion(
    id="1", prefix="/v1", status="DEPRECATED", updated="2014-9-11T17:47:05Z",
    media_type="application/vnd.openstack.messaging-v1+json",
    client_id_required=False, project_required=False,
    metadata_resource=True, lazy_queues=False, empty_status=204, content_location=True,
    bare_arrays=True, ttl_required=True, post_partial=True, message_ids=False,
    listed_claim_ids=False, checksums=False, pop=False, claim_body_required=True,
    patch_grace_default=0,
)

V1_1 = ApiVersion(
    id="1.1", prefix="/v1.1", status="DEPRECATED", updated="2016-7-29T02:22:47Z",
    media_type="application/vnd.openstack.messaging-v1_1+json", health_open=True,
)

V2 = ApiVersion(
    id="2", prefix="/v2", status="CURRENT", updated="2014-9-24T04:06:47Z",
    media_type="application/vnd.openstack.messaging-v2+json",
)

ALL: tuple[ApiVersion, ...] = (V1_0, V1_1, V2)  # upstream's order in GET /
IDS: tuple[str, ...] = tuple(v.id for v in ALL)


def enabled(ids: Iterable[str]) -> tuple[ApiVersion, ...]:
    """The versions named by ``enable_api_versions``, in upstream's order."""
    wanted = set(ids)
    return tuple(v for v in ALL if v.id in wanted)


def version_list(ids: Iterable[str]) -> dict[str, object]:
    """The body of ``GET /``: only the enabled versions."""
    return {"versions": [v.entry for v in enabled(ids)]}
