"""Posts and deletes got cheaper (issue 15) without a rules version: the same log must fold
to the same keys and values, record by record, as the code before the change did.

The expected fingerprints were produced with the code of main at bfaa5a2 (before the change,
with this module and ``post_history.py`` added), for every rules version: ``change_chain``
hashes each record's change set (puts, tombstones and range deletes) folded one record per
batch; ``checkpoints`` hashes the whole state every CHECKPOINT records folded in batches of
7 and of 50, so a batch that writes a subscription and then posts, or re-reads what it just
wrote, is covered. Any change to what a post or a delete writes changes these: that needs a
rules version (DESIGN §7), not a new fingerprint here.
"""

from __future__ import annotations

import hashlib

import pytest

from projections.apply import apply_record
from projections.memstore import MemoryStore
from projections.rules import versions
from tests.projections.foldcheck import checkpoints
from tests.projections.post_history import P, history

SEED = 15

# Folded with the code of bfaa5a2; see the module docstring. rules -> (chain, batch 7, 50).
EXPECTED: dict[int, tuple[str, str, str]] = {
    1: ("e8a70a9059d6d0fb9ff6f035c7b8bf3adebe3791bb0c07f382da34642fc0c349",
        "1f8c03165cc783fb8dc91d5f5f758b043762582c36a1ab5e677a03a255503c4a",
        "1f8c03165cc783fb8dc91d5f5f758b043762582c36a1ab5e677a03a255503c4a"),
    2: ("ef158718a21a2f9172c9d6b939bd51d7a3bbedbc937d1ee970b88fca7663efb5",
        "1ab66c20caab0397d9c61324db8b4041008ef0debb32776fd0b07cb564b991fb",
        "1ab66c20caab0397d9c61324db8b4041008ef0debb32776fd0b07cb564b991fb"),
    3: ("1dde4240e56584b6f6d81a16c93d56807af24f561f70e436c2c471a066b4e310",
        "9bb5f2fc5e77cee84fac0e2336e47348036e30c9083e2dd94f0541cf677026f8",
        "9bb5f2fc5e77cee84fac0e2336e47348036e30c9083e2dd94f0541cf677026f8"),
    4: ("ba098ea972640ac5f5622dfeee28cda6c9a6788b3add3fa7883d32587131cd1f",
        "b634e81cbff0cfbac0700a755e3bdff3175d11cc9600e7c4415c460ecf307472",
        "b634e81cbff0cfbac0700a755e3bdff3175d11cc9600e7c4415c460ecf307472"),
    5: ("fdd63e5a6aef76b909b291b54ac3762d9e86e8f07de91c523aee0ce08cc53604",
        "94ff32e5abd1cf5abc292d3b96962a09c55ad58966dcaf2740fea7812f32067f",
        "94ff32e5abd1cf5abc292d3b96962a09c55ad58966dcaf2740fea7812f32067f"),
    6: ("008b055f83a33accd703757e0dd5c8466cb77d0297a3fccf9e6da510ba060694",
        "0ea0a233002b902d883f41cede62f47da5da1ef47e08edc9e798f9bbb2bcc9d1",
        "0ea0a233002b902d883f41cede62f47da5da1ef47e08edc9e798f9bbb2bcc9d1"),
    7: ("fb596f668fd62624f3d6bd67822dd3657962aafd2379058e74a22bbac85eaf69",
        "dae1f4c0d2091341426bb48840234563f5a77fefbaedc8a88b7b8052e4a8432d",
        "dae1f4c0d2091341426bb48840234563f5a77fefbaedc8a88b7b8052e4a8432d"),
    # Rules 8 (LEAN_EXPIRY) folded with the code that added them; test_lean_expiry shows
    # that state to be rules 7's less the per-queue expiry entries.
    8: ("db58807347ffe4fa347925abed71710bc96aa7d32f05100a71743a27fc392499",
        "e4ca024552ac0d8c374dc09fd31f12d30c4233df9f7b90151a66bbcff6557ca5",
        "e4ca024552ac0d8c374dc09fd31f12d30c4233df9f7b90151a66bbcff6557ca5"),
}


def change_chain(records: list[bytes]) -> str:
    """One hash over every record's change set, each record folded and committed alone."""
    store, chain = MemoryStore(), hashlib.blake2b(digest_size=32)
    for offset, record in enumerate(records):
        changes = apply_record(store, P, offset, record)
        for key, value in sorted(changes.items()):
            chain.update(len(key).to_bytes(4, "big") + key)
            chain.update(b"\x00" if value is None else b"\x01" + len(value).to_bytes(4, "big"))
            chain.update(value or b"")
        for start, stop in changes.ranges:
            chain.update(b"\x02" + start + b"\x03" + stop)
        chain.update(b"\x04")
        store.commit(changes)
    return chain.hexdigest()




def fingerprints(rules: int) -> tuple[str, str, str]:
    records = history(SEED, rules)
    return change_chain(records), checkpoints(records, 7), checkpoints(records, 50)


@pytest.mark.parametrize("rules", sorted(versions.VERSIONS))
def test_posts_and_deletes_fold_as_before(rules: int) -> None:
    assert fingerprints(rules) == EXPECTED[rules]


if __name__ == "__main__":  # how EXPECTED was printed (with the code before the change)
    for rules in sorted(versions.VERSIONS):
        print(f"    {rules}: {fingerprints(rules)!r},")
