"""A user's cap on keys that still work holds when their creations race: each
counts after the one before it has committed (two browser tabs, a script in a loop)."""

from __future__ import annotations

import asyncio

from engage_adapters.bootstrap import Services
from engage_core.errors import Conflict
from engage_core.services.api_keys import MAX_KEYS_PER_USER

ROOM = 3  # keys the user may still create when the race starts
RACERS = 12


async def test_concurrent_creations_never_pass_the_cap(services: Services) -> None:
    user = await services.admin.create_user(email="keys@example.com", password="a good passphrase")
    for n in range(MAX_KEYS_PER_USER - ROOM):
        await services.api_keys.create(user.id, name=f"key {n}", scopes=["metrics:read"])
    answers = await asyncio.gather(
        *(
            services.api_keys.create(user.id, name=f"racer {n}", scopes=["metrics:read"])
            for n in range(RACERS)
        ),
        return_exceptions=True,
    )
    refused = [a for a in answers if isinstance(a, Conflict)]
    assert len(refused) == RACERS - ROOM, answers
    assert len(await services.api_keys.list_for(user.id)) == MAX_KEYS_PER_USER
