"""A started service sets its start-up heap aside from the garbage collector (gc.freeze)."""

from __future__ import annotations

import gc

from claimdesk.service import build_app
from claimdesk.settings import Settings
from intake.bootstrap import DEFINITION


async def test_start_up_heap_is_frozen_out_of_collections(settings: Settings) -> None:
    app = build_app(DEFINITION, settings.model_copy(update={"gc_freeze": True}))
    try:
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            assert frozen > 20_000  # routes, validators, the OpenAPI schema, ...
            assert app.openapi_schema is not None  # built before the freeze
    finally:
        gc.unfreeze()  # this process goes on running other tests
