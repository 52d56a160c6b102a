"""Use cases: load -> decide -> append (events, read model and own tables in one transaction)."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from claimdesk.auth import Principal
from claimdesk.errors import Conflict, Forbidden, NotFound
from claimdesk.events.base import Event
from claimdesk.events.intake import (
    CaseReported,
    ConsultationLogged,
    DiscrepancyRecorded,
    DiscrepancyResolved,
    DocumentReceived,
    DocumentRequested,
    DuplicateCaseLinked,
    OwnershipHandedOver,
    RequestedDocument,
)
from claimdesk.eventstore import ANY, ConcurrencyConflict, shift_params
from claimdesk.service import Runtime
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from intake import documents
from intake.domain import (
    CORRECTABLE,
    CaseState,
    decide_cancel,
    decide_correction,
    differences,
    evolve,
)
from intake.metrics import CASES
from intake.schemas import CaseFields, CaseIn, ConsultationIn, PhoneReportIn
from intake.settings import IntakeSettings
from intake.validation import derive_region

SUPERVISING = ("team_lead", "supervisor", "manager", "admin")


def isettings(rt: Runtime) -> IntakeSettings:
    s: IntakeSettings = rt.extras["intake_settings"]
    return s


def invalid(errors: Sequence[tuple[tuple[str, ...], str]]) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", *loc), "msg": msg, "type": "value_error"} for loc, msg in errors]
    )


def _ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def case_errors(
    f: dict[str, Any], now: datetime, skew_s: int, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], str]]:
    """Rules across fields and against the clock (formats are checked by the schema)."""
    errs: list[tuple[tuple[str, ...], str]] = []
    if str(f.get("loss_type", "")).startswith("vehicle_") and not f.get("plate"):
        errs.append(((*prefix, "plate"), "required for vehicle losses (车险案件必须填写车牌号)"))
    if f.get("survey_place") == "repair_shop" and not f.get("repair_shop"):
        errs.append(
            ((*prefix, "repair_shop"), "required when survey_place is repair_shop (请填写修理厂)")
        )
    if (f.get("loss_lat") is None) != (f.get("loss_lon") is None):
        errs.append(((*prefix, "loss_lon"), "give both loss_lat and loss_lon, or neither"))
    lt = f.get("loss_time")
    if lt is not None and _ts(lt) < now - timedelta(days=3650):
        errs.append(((*prefix, "loss_time"), "more than 10 years ago (出险时间过早)"))
    if lt is not None and _ts(lt) > now + timedelta(seconds=skew_s):
        errs.append(
            (
                (*prefix, "loss_time"),
                f"must not be in the future (now is {now.isoformat()}) (出险时间不能晚于当前时间)",
            )
        )
    return errs


def new_case_id(now: datetime) -> str:
    """`C` + the day + `-` + 32 random bits in hex, e.g. C20261126-3F9A1B7C."""
    return "C%04d%02d%02d-%s" % (now.year, now.month, now.day, secrets.token_hex(4).upper())  # noqa: UP031


def request_hash(kind: str, body: dict[str, Any]) -> str:
    raw = json.dumps({"kind": kind, "body": body}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


# -- reading ----------------------------------------------------------------------------------

_CASE_COLUMNS = "case_id, insurer_code, status, version, data"


async def _documents(conn: asyncpg.Connection, case_ids: list[str]) -> dict[str, list[Any]]:
    rows = await conn.fetch(
        "SELECT case_id, code, name, received_at, received_by FROM case_documents "
        "WHERE case_id = ANY($1) ORDER BY case_id, position",
        case_ids,
    )
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r["case_id"], []).append(
            {
                "code": r["code"],
                "name": r["name"],
                "received": r["received_at"] is not None,
                "received_at": r["received_at"],
                "received_by": r["received_by"],
            }
        )
    return out


def _case_out(row: asyncpg.Record, docs: list[Any]) -> dict[str, Any]:
    data = dict(row["data"])
    data["status"] = row["status"]
    data["version"] = row["version"]
    data["documents"] = docs
    data["missing_documents"] = [d["code"] for d in docs if not d["received"]]
    return data


async def case_view(conn: asyncpg.Connection, case_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {_CASE_COLUMNS} FROM cases WHERE case_id = $1", case_id)
    if row is None:
        raise NotFound(f"no case {case_id}")
    docs = await _documents(conn, [case_id])
    return _case_out(row, docs.get(case_id, []))


async def visible_case(
    conn: asyncpg.Connection, case_id: str, who: Principal, *, lock: bool = False
) -> asyncpg.Record:
    """The case row if `who` may see it; another insurer's case is 404, never 403."""
    row = await conn.fetchrow(
        f"SELECT {_CASE_COLUMNS}, owner FROM cases WHERE case_id = $1"
        + (" FOR UPDATE" if lock else ""),
        case_id,
    )
    if row is None or (who.role == "insurer" and row["insurer_code"] != who.insurer_code):
        raise NotFound(f"no case {case_id}")
    return row


async def get_case(rt: Runtime, case_id: str, who: Principal) -> dict[str, Any]:
    async with rt.pool.acquire() as conn:
        await visible_case(conn, case_id, who)
        return await case_view(conn, case_id)


def _cursor_decode(cursor: str | None) -> int | None:
    if not cursor:
        return None
    import base64

    try:
        return int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except ValueError:
        raise invalid([(("cursor",), "not a cursor returned by this API")]) from None


def _cursor_encode(seq: int) -> str:
    import base64

    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


async def list_cases(
    rt: Runtime,
    who: Principal,
    *,
    status: str | None,
    plate: str | None,
    report_no: str | None,
    owner: str | None = None,
    from_: datetime | None,
    to: datetime | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    where, args = [], []

    def add(clause: str, value: Any) -> None:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))

    if who.role == "insurer":
        add("insurer_code = {}", who.insurer_code)
    if status:
        add("status = {}", status)
    if plate:
        add("plate = {}", plate)
    if report_no:
        add("report_no = {}", report_no)
    if owner:
        add("owner = {}", owner)
    if from_:
        add("reported_at >= {}", from_)
    if to:
        add("reported_at < {}", to)
    after = _cursor_decode(cursor)
    if after is not None:
        add("seq < {}", after)
    args.append(limit + 1)
    sql = (
        f"SELECT seq, {_CASE_COLUMNS} FROM cases"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY seq DESC LIMIT ${len(args)}"
    )
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
        page = rows[:limit]
        docs = await _documents(conn, [r["case_id"] for r in page])
    return {
        "items": [_case_out(r, docs.get(r["case_id"], [])) for r in page],
        "next_cursor": _cursor_encode(page[-1]["seq"]) if len(rows) > limit else None,
    }


# -- registering a case ---------------------------------------------------------------------

# The case's read-model row and its requested documents, written only if `{only_if}` holds
# and the insurer's report number is new (else `c` is empty).
_CASE_CTES = """c AS (
    INSERT INTO cases (case_id, insurer_code, channel, report_no, plate, loss_time, status,
                       owner, version, data, reported_at, updated_at)
    SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::timestamptz, 'reported',
           $7::text, $8::int, $9::jsonb, $10::timestamptz, $10::timestamptz
    WHERE {only_if}
    ON CONFLICT (insurer_code, report_no) WHERE channel = 'insurer_api' DO NOTHING
    RETURNING case_id
), docs AS (
    INSERT INTO case_documents (case_id, code, name, position, requested_at)
    SELECT c.case_id, t.code, t.name, t.ord - 1, $10
    FROM c, unnest($11::text[], $12::text[]) WITH ORDINALITY AS t(code, name, ord)
)"""
_INSERT_CASE = f"WITH {_CASE_CTES.format(only_if='true')}\nSELECT case_id FROM c"


def _case_args(
    ev: CaseReported, n_events: int, state: CaseState, now: datetime, items: list[Any]
) -> list[Any]:
    return [
        ev.case_id,
        ev.insurer_code,
        ev.channel,
        ev.report_no,
        ev.plate,
        ev.loss_time,
        ev.first_contact_owner,
        n_events,
        state,
        now,
        [i["code"] for i in items],
        [i["name"] for i in items],
    ]


async def _claim_key(
    conn: asyncpg.Connection, *, scope: str, key: str, req_hash: str, case_id: str, now: datetime
) -> str | None:
    """Record the key for this case; if it was used before, the first case id (or 409)."""
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys (scope, key, request_hash, case_id, created_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        scope,
        key,
        req_hash,
        case_id,
        now,
    )
    if claimed:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, case_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    assert row is not None
    if row["request_hash"] != req_hash:
        raise Conflict(
            "this Idempotency-Key was used with a different request body "
            f"(first request created case {row['case_id']})",
            case_id=row["case_id"],
        )
    return str(row["case_id"])


@functools.cache
def _duplicate_sql(by_report_no: bool, by_plate: bool) -> str:
    """The lookup of an earlier case of the same loss: the same insurer's report number from
    the other channel, else the same plate and a loss time within the window from another
    channel or insurer. Parameters: insurer, channel, then the report number and/or the
    plate, loss time and window (`_duplicate_query` builds them)."""
    # One index-friendly branch per match kind (a single OR'ed query with "$n IS NOT NULL"
    # guards got a generic plan that scanned the whole table on every post).
    cols = "case_id, insurer_code, channel, data, seq, (data->>'duplicate_of') IS NOT NULL AS dup"
    branches = []
    if by_report_no:
        branches.append(
            f"""SELECT {cols}, true AS by_report_no FROM cases
                WHERE insurer_code = $1 AND report_no = $3 AND channel <> $2
                  AND status <> 'cancelled'"""
        )
    if by_plate:
        n = 6 if by_report_no else 5
        same_report = "report_no = $3 AND insurer_code = $1" if by_report_no else "false"
        branches.append(
            f"""SELECT {cols}, coalesce({same_report}, false) AS by_report_no FROM cases
                WHERE plate = ${n - 2}
                  AND loss_time BETWEEN ${n - 1}::timestamptz - ${n}::interval
                                    AND ${n - 1}::timestamptz + ${n}::interval
                  AND (channel <> $2 OR insurer_code <> $1) AND status <> 'cancelled'"""
        )
    union = " UNION ALL ".join(f"({b})" for b in branches)
    return f"{union} ORDER BY by_report_no DESC, dup, seq LIMIT 1"


def _duplicate_query(ev: CaseReported, window_s: int) -> tuple[str, list[Any]] | None:
    """`_duplicate_sql` for this case with its arguments; None when the case carries neither
    a report number nor a plate."""
    if not ev.report_no and not ev.plate:
        return None
    args: list[Any] = [ev.insurer_code, ev.channel]
    if ev.report_no:
        args.append(ev.report_no)
    if ev.plate:
        args += [ev.plate, ev.loss_time, timedelta(seconds=window_s)]
    return _duplicate_sql(bool(ev.report_no), bool(ev.plate)), args


async def _find_duplicate(
    conn: asyncpg.Connection, ev: CaseReported, window_s: int
) -> tuple[asyncpg.Record, list[str]] | None:
    """An earlier case of the same loss (`_duplicate_query`) and the fields it matched on."""
    query = _duplicate_query(ev, window_s)
    row = await conn.fetchrow(query[0], *query[1]) if query else None
    if row is None:
        return None
    return row, (["insurer_code", "report_no"] if row["by_report_no"] else ["plate", "loss_time"])


def _fold(events: Sequence[Event], at: datetime, state: CaseState | None = None) -> CaseState:
    for e in events:
        state = evolve(state, e, at)
    assert state is not None
    return state


async def _bump(
    conn: asyncpg.Connection, case_id: str, events: Sequence[Event], now: datetime
) -> None:
    """Apply events appended to an existing case to its read model."""
    row = await conn.fetchrow("SELECT data, status FROM cases WHERE case_id = $1", case_id)
    assert row is not None
    state = _fold(events, now, dict(row["data"]))
    status = "cancelled" if state.get("status") == "cancelled" else row["status"]
    state["status"] = status
    await conn.execute(
        "UPDATE cases SET data = $2, version = version + $3, status = $4, owner = $5, "
        "plate = $6, loss_time = $7, updated_at = $8 WHERE case_id = $1",
        case_id,
        state,
        len(events),
        status,
        state.get("first_contact_owner"),
        state.get("plate"),
        _ts(state["loss_time"]),
        now,
    )


def _new_case_events(
    ev: CaseReported, items: list[Any], dup: tuple[asyncpg.Record, list[str]] | None
) -> list[Event]:
    events: list[Event] = [ev]
    if items:
        events.append(
            DocumentRequested(
                case_id=ev.case_id,
                documents=[RequestedDocument(code=i["code"], name=i["name"]) for i in items],
            )
        )
    if dup is not None:
        events.append(
            DuplicateCaseLinked(
                case_id=ev.case_id, duplicate_of=dup[0]["case_id"], matched_on=dup[1]
            )
        )
    return events


@functools.lru_cache(maxsize=8)
def _at_once_sql(duplicate_sql: str | None, duplicate_args: int) -> str:
    """The CTEs `_register_at_once` puts before the append: the duplicate lookup (its
    parameters first), then the case row and its documents, written only if it found none."""
    if duplicate_sql is None:
        return _CASE_CTES.format(only_if="true")
    cases = _CASE_CTES.format(only_if="NOT EXISTS (SELECT FROM dup)")
    shifted = shift_params(cases, duplicate_args)
    return f"dup AS ({duplicate_sql}),\n{shifted}"


async def _register_at_once(
    rt: Runtime, conn: asyncpg.Connection, ev: CaseReported, items: list[Any], now: datetime
) -> dict[str, Any] | None:
    """The common case in one statement, no transaction block: if there is no earlier case of
    the same loss and the report number is new, write the read model, the documents, the
    events and the outbox row (one round trip where the general path takes five), and return
    the new case. None when it wrote nothing: the general path then decides what the post is."""
    events = _new_case_events(ev, items, None)
    state = _fold(events, now)
    dup = _duplicate_query(ev, isettings(rt).duplicate_window_s)
    dup_sql, dup_args = dup or (None, [])
    before = _at_once_sql(dup_sql, len(dup_args))
    args = [*dup_args, *_case_args(ev, len(events), state, now, items)]
    _, appended = await rt.store.append_with(
        conn, f"case-{ev.case_id}", events, 0, before=before, args=args, guard="c"
    )
    return _new_case_view(state, events, items) if appended else None


CASE_ID_ATTEMPTS = 4


async def _register(
    rt: Runtime,
    ev: CaseReported,
    *,
    scope: str,
    idem_key: str | None,
    req_hash: str,
) -> tuple[dict[str, Any], bool]:
    """Store a new case, or return the first one (`req_hash`: the request's hash, needed only
    with an `idem_key`).

    A case id is the day and 32 random bits: at a few ten thousand cases a day two of them
    will sometimes draw the same id. The second then finds the id taken (the case row's key,
    or its stream already begun): nothing of it was written, and it is tried again under a
    new id."""
    for attempt in range(CASE_ID_ATTEMPTS):
        try:
            return await _register_as(rt, ev, scope=scope, idem_key=idem_key, req_hash=req_hash)
        except (ConcurrencyConflict, asyncpg.UniqueViolationError):
            if attempt == CASE_ID_ATTEMPTS - 1 or not await _case_id_taken(rt, ev.case_id):
                raise
            ev = ev.model_copy(update={"case_id": new_case_id(rt.clock.now())})
    raise AssertionError("unreachable")


async def _case_id_taken(rt: Runtime, case_id: str) -> bool:
    async with rt.pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT FROM cases WHERE case_id = $1) "
                "OR EXISTS (SELECT FROM events WHERE stream_id = $2)",
                case_id,
                f"case-{case_id}",
            )
        )


async def _register_as(
    rt: Runtime,
    ev: CaseReported,
    *,
    scope: str,
    idem_key: str | None,
    req_hash: str,
) -> tuple[dict[str, Any], bool]:
    """`_register` under `ev`'s case id."""
    now = rt.clock.now()
    async with rt.pool.acquire() as conn:
        items = await documents.cached_checklist(rt, conn, ev.insurer_code, ev.loss_type)
        if not idem_key:
            view = await _register_at_once(rt, conn, ev, items, now)
            if view is not None:
                return view, True
        async with conn.transaction():
            if idem_key:
                first = await _claim_key(
                    conn, scope=scope, key=idem_key, req_hash=req_hash, case_id=ev.case_id, now=now
                )
                if first is not None:
                    return await case_view(conn, first), False
            dup = await _find_duplicate(conn, ev, isettings(rt).duplicate_window_s)
            events = _new_case_events(ev, items, dup)
            state = _fold(events, now)
            inserted = await conn.fetchval(
                _INSERT_CASE, *_case_args(ev, len(events), state, now, items)
            )
            if inserted is None:  # the insurer's report number was registered before
                first = await conn.fetchval(
                    "SELECT case_id FROM cases WHERE insurer_code = $1 AND report_no = $2 "
                    "AND channel = 'insurer_api'",
                    ev.insurer_code,
                    ev.report_no,
                )
                if idem_key:
                    await conn.execute(
                        "UPDATE idempotency_keys SET case_id = $3 WHERE scope = $1 AND key = $2",
                        scope,
                        idem_key,
                        first,
                    )
                return await case_view(conn, first), False
            await rt.store.append(conn, f"case-{ev.case_id}", events, 0)
            if dup is not None and dup[0]["insurer_code"] == ev.insurer_code:
                await _record_discrepancies(rt, conn, ev=ev, state=state, other=dup[0], now=now)
                return await case_view(conn, ev.case_id), True
    return _new_case_view(state, events, items), True


class NewCase(dict[str, Any]):
    """The view of a case built from the events just stored: only fields of `CaseOut`, each
    value already as `CaseOut` writes it in JSON (what `evolve` makes: the event's JSON form,
    times in pydantic's format), so the edge may dump it as it is. A view read back from the
    database is a plain dict and goes through `CaseOut`."""


def _json_time(value: str) -> str:
    """An `isoformat()` time as pydantic writes it (UTC as `Z`)."""
    return value[:-6] + "Z" if value.endswith("+00:00") else value


def _new_case_view(state: CaseState, events: list[Event], items: list[Any]) -> NewCase:
    docs = [
        {
            "code": i["code"],
            "name": i["name"],
            "received": False,
            "received_at": None,
            "received_by": None,
        }
        for i in items
    ]
    view = NewCase(state)
    view["reported_at"] = _json_time(view["reported_at"])
    view["updated_at"] = _json_time(view["updated_at"])
    view["version"] = len(events)
    view["documents"] = docs
    view["missing_documents"] = [i["code"] for i in items]
    return view


async def _record_discrepancies(
    rt: Runtime,
    conn: asyncpg.Connection,
    *,
    ev: CaseReported,
    state: CaseState,
    other: asyncpg.Record,
    now: datetime,
) -> None:
    """Insurer post vs the agent's phone registration: one entry per differing field."""
    other_state = dict(other["data"])
    if ev.channel == "phone":
        phone, insurer = state, other_state
    else:
        phone, insurer = other_state, state
    if phone.get("channel") != "phone" or insurer.get("channel") != "insurer_api":
        return
    insurer_case, phone_case = insurer["case_id"], phone["case_id"]
    events: list[Event] = []
    for field, pv, iv in differences(phone, insurer):
        did = f"dis_{secrets.token_hex(5)}"
        events.append(
            DiscrepancyRecorded(
                case_id=insurer_case,
                discrepancy_id=did,
                field=field,
                phone_value=pv,
                insurer_value=iv,
                agent=phone.get("first_contact_owner"),
                phone_case_id=phone_case,
            )
        )
        await conn.execute(
            "INSERT INTO discrepancies (discrepancy_id, case_id, phone_case_id, field, "
            "phone_value, insurer_value, agent, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            did,
            insurer_case,
            phone_case,
            field,
            pv,
            iv,
            phone.get("first_contact_owner"),
            now,
        )
    if events:
        await rt.store.append(conn, f"case-{insurer_case}", events, ANY)
        await conn.execute(
            "UPDATE cases SET version = version + $2 WHERE case_id = $1", insurer_case, len(events)
        )


_NOT_REPORTED = ("insurer_code", "caller_name", "caller_phone")


def _reported(
    case_id: str,
    insurer_code: str,
    channel: str,
    f: CaseFields,
    fields: dict[str, Any] | None = None,
    **extra: Any,
) -> CaseReported:
    """The event of a new case from its validated fields (`fields`: `f.model_dump()`, when
    the caller has it already)."""
    data = dict(fields) if fields is not None else f.model_dump()
    for name in _NOT_REPORTED:
        data.pop(name, None)
    data["region"] = f.region or derive_region(f.loss_address, f.loss_lat, f.loss_lon)
    data.update(extra)
    return CaseReported(case_id=case_id, insurer_code=insurer_code, channel=channel, **data)


async def report_case(
    rt: Runtime, who: Principal, body: CaseIn, idem_key: str | None
) -> tuple[dict[str, Any], bool]:
    """An insurer's post (委托案件): 201 when new, the first case when repeated."""
    assert who.insurer_code is not None
    now = rt.clock.now()
    fields = body.model_dump()
    errs = case_errors(fields, now, isettings(rt).loss_time_skew_s)
    if errs:
        raise invalid(errs)
    ev = _reported(new_case_id(now), who.insurer_code, "insurer_api", body, fields)
    out = await _register(
        rt,
        ev,
        scope=f"insurer:{who.insurer_code}",
        idem_key=idem_key,
        req_hash=request_hash("case", body.model_dump(mode="json")) if idem_key else "",
    )
    CASES.labels("insurer_api", "created" if out[1] else "repeat").inc()
    return out


async def report_by_phone(
    rt: Runtime, who: Principal, body: PhoneReportIn, idem_key: str | None
) -> tuple[dict[str, Any], bool]:
    """A case taken by phone; the agent becomes its first-contact owner (首问责任人)."""
    now = rt.clock.now()
    errs = case_errors(body.model_dump(), now, isettings(rt).loss_time_skew_s)
    async with rt.pool.acquire() as conn:
        known = await conn.fetchval("SELECT true FROM insurers WHERE code = $1", body.insurer_code)
    if not known:
        errs.append((("insurer_code",), f"unknown insurer {body.insurer_code}"))
    if errs:
        raise invalid(errs)
    promised = body.callback_promised_at
    if promised < now - timedelta(seconds=isettings(rt).loss_time_skew_s):
        errs.append((("callback_promised_at",), "must not be in the past (承诺回电时间已过)"))
    elif promised > now + timedelta(days=30):
        errs.append((("callback_promised_at",), "more than 30 days ahead"))
    if errs:
        raise invalid(errs)
    owner = who.number or who.subject
    ev = _reported(
        new_case_id(now),
        body.insurer_code,
        "phone",
        body,
        report_no=body.report_no,
        first_contact_owner=owner,
        caller_name=body.caller_name,
        caller_phone=body.caller_phone,
        callback_promised_at=body.callback_promised_at,
    )
    out = await _register(
        rt,
        ev,
        scope=f"staff:{owner}",
        idem_key=idem_key,
        req_hash=request_hash("phone", body.model_dump(mode="json")) if idem_key else "",
    )
    CASES.labels("phone", "created" if out[1] else "repeat").inc()
    return out


# -- changing a case --------------------------------------------------------------------------


async def _append_to_case(
    rt: Runtime, conn: asyncpg.Connection, row: asyncpg.Record, events: Sequence[Event]
) -> None:
    if not events:
        return
    try:
        await rt.store.append(conn, f"case-{row['case_id']}", events, row["version"])
    except ConcurrencyConflict:
        raise Conflict(f"case {row['case_id']} changed meanwhile; retry") from None
    await _bump(conn, row["case_id"], events, rt.clock.now())


async def correct_case(
    rt: Runtime, who: Principal, case_id: str, changes: dict[str, Any], reason: str
) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await visible_case(conn, case_id, who, lock=True)
        state: CaseState = dict(row["data"])
        state["status"] = row["status"]
        merged = {k: state.get(k) for k in CORRECTABLE}
        merged.update({k: v for k, v in changes.items() if k in CORRECTABLE})
        if ("loss_address" in changes or "loss_lat" in changes) and "region" not in changes:
            merged["region"] = None
        try:
            validated = CaseFields.model_validate(merged)
        except ValidationError as exc:
            if state["status"] in ("cancelled", "closed"):
                validated = None
            else:
                raise RequestValidationError(
                    [
                        {**e, "loc": ("body", "changes", *e["loc"])}
                        for e in exc.errors(include_url=False)
                    ]
                ) from None
        if validated is not None and state["status"] not in ("cancelled", "closed"):
            errs = case_errors(
                validated.model_dump(), rt.clock.now(), isettings(rt).loss_time_skew_s, ("changes",)
            )
            if errs:
                raise invalid(errs)
        values = validated.model_dump(mode="json") if validated is not None else {}
        if values and values.get("region") is None:
            values["region"] = derive_region(
                values["loss_address"], values.get("loss_lat"), values.get("loss_lon")
            )
            if values["region"] != state.get("region"):
                changes = {**changes, "region": values["region"]}
        events = decide_correction(state, changes, values, reason, who.actor)
        await _append_to_case(rt, conn, row, events)
        return await case_view(conn, case_id)


async def cancel_case(rt: Runtime, who: Principal, case_id: str, reason: str) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await visible_case(conn, case_id, who, lock=True)
        state: CaseState = dict(row["data"])
        state["status"] = row["status"]
        await _append_to_case(rt, conn, row, decide_cancel(state, reason, who.actor))
        return await case_view(conn, case_id)


# -- ownership and consultations -------------------------------------------------------------


async def _active_staff(conn: asyncpg.Connection, number: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM staff WHERE number = $1 AND deactivated_at IS NULL", number
        )
    )


def _may_hand_over(who: Principal, owner: str | None) -> None:
    if who.role in SUPERVISING or (owner is not None and who.number == owner):
        return
    raise Forbidden(
        f"only the owner ({owner or 'nobody'}) or a team lead, supervisor or manager may hand over"
    )


async def hand_over_case(
    rt: Runtime, who: Principal, case_id: str, to_owner: str, reason: str
) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await visible_case(conn, case_id, who, lock=True)
        _may_hand_over(who, row["owner"])
        if not await _active_staff(conn, to_owner):
            raise invalid([(("to_owner",), f"no active staff member {to_owner}")])
        if row["owner"] == to_owner:
            raise Conflict(f"{to_owner} already owns case {case_id}")
        ev = OwnershipHandedOver(
            subject_type="case",
            subject_id=case_id,
            case_id=case_id,
            from_owner=row["owner"] or "unassigned",
            to_owner=to_owner,
            reason=reason,
        )
        await _append_to_case(rt, conn, row, [ev])
    return {"subject_type": "case", "subject_id": case_id, "owner": to_owner}


async def log_consultation(rt: Runtime, who: Principal, body: ConsultationIn) -> dict[str, Any]:
    now = rt.clock.now()
    agent = who.number or who.subject
    errs: list[tuple[tuple[str, ...], str]] = []
    if not body.resolved and not body.follow_up_owner:
        errs.append((("follow_up_owner",), "an unresolved consultation needs a follow-up owner"))
    if not body.resolved and not body.follow_up_due:
        errs.append((("follow_up_due",), "an unresolved consultation needs a due time"))
    if body.follow_up_due and body.follow_up_due < now:
        errs.append((("follow_up_due",), "must be in the future"))
    elif body.follow_up_due and body.follow_up_due > now + timedelta(days=365):
        errs.append((("follow_up_due",), "more than a year ahead"))
    async with rt.pool.acquire() as conn:
        if body.follow_up_owner and not await _active_staff(conn, body.follow_up_owner):
            errs.append((("follow_up_owner",), f"no active staff member {body.follow_up_owner}"))
        if body.case_id and not await conn.fetchval(
            "SELECT true FROM cases WHERE case_id = $1", body.case_id
        ):
            errs.append((("case_id",), f"no case {body.case_id}"))
        if errs:
            raise invalid(errs)
        cid = f"Q{now:%Y%m%d}-{secrets.token_hex(4).upper()}"
        ev = ConsultationLogged(consultation_id=cid, agent=agent, **body.model_dump())
        data = ev.model_dump(mode="json")
        async with conn.transaction():
            await rt.store.append(conn, f"consultation-{cid}", [ev], 0)
            await conn.execute(
                "INSERT INTO consultations (consultation_id, case_id, agent, owner, data, "
                "logged_at) VALUES ($1, $2, $3, $3, $4, $5)",
                cid,
                body.case_id,
                agent,
                data,
                now,
            )
    return {**data, "owner": agent, "logged_at": now}


async def get_consultation(rt: Runtime, cid: str) -> dict[str, Any]:
    row = await rt.pool.fetchrow("SELECT * FROM consultations WHERE consultation_id = $1", cid)
    if row is None:
        raise NotFound(f"no consultation {cid}")
    return {**row["data"], "owner": row["owner"], "logged_at": row["logged_at"]}


async def list_consultations(
    rt: Runtime, owner: str | None, resolved: bool | None, limit: int
) -> list[dict[str, Any]]:
    rows = await rt.pool.fetch(
        "SELECT * FROM consultations WHERE ($1::text IS NULL OR owner = $1) "
        "AND ($2::boolean IS NULL OR (data->>'resolved')::boolean = $2) "
        "ORDER BY logged_at DESC, consultation_id LIMIT $3",
        owner,
        resolved,
        limit,
    )
    return [{**r["data"], "owner": r["owner"], "logged_at": r["logged_at"]} for r in rows]


async def hand_over_consultation(
    rt: Runtime, who: Principal, cid: str, to_owner: str, reason: str
) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT owner, case_id FROM consultations WHERE consultation_id = $1 FOR UPDATE", cid
        )
        if row is None:
            raise NotFound(f"no consultation {cid}")
        _may_hand_over(who, row["owner"])
        if not await _active_staff(conn, to_owner):
            raise invalid([(("to_owner",), f"no active staff member {to_owner}")])
        if row["owner"] == to_owner:
            raise Conflict(f"{to_owner} already owns consultation {cid}")
        ev = OwnershipHandedOver(
            subject_type="consultation",
            subject_id=cid,
            case_id=row["case_id"],
            from_owner=row["owner"],
            to_owner=to_owner,
            reason=reason,
        )
        await rt.store.append(conn, f"consultation-{cid}", [ev], ANY)
        await conn.execute(
            "UPDATE consultations SET owner = $2 WHERE consultation_id = $1", cid, to_owner
        )
    return {"subject_type": "consultation", "subject_id": cid, "owner": to_owner}


# -- discrepancies ------------------------------------------------------------------------------


async def list_discrepancies(
    rt: Runtime, status: str | None, case_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await rt.pool.fetch(
        "SELECT * FROM discrepancies WHERE ($1::text IS NULL OR status = $1) "
        "AND ($2::text IS NULL OR case_id = $2 OR phone_case_id = $2) "
        "ORDER BY created_at DESC, discrepancy_id LIMIT $3",
        status,
        case_id,
        limit,
    )
    return [dict(r) for r in rows]


async def resolve_discrepancy(rt: Runtime, who: Principal, did: str, note: str) -> dict[str, Any]:
    now = rt.clock.now()
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM discrepancies WHERE discrepancy_id = $1 FOR UPDATE", did
        )
        if row is None:
            raise NotFound(f"no discrepancy {did}")
        if row["status"] == "resolved":
            raise Conflict(f"discrepancy {did} is already resolved", state="resolved")
        ev = DiscrepancyResolved(
            case_id=row["case_id"], discrepancy_id=did, note=note, resolved_by=who.actor
        )
        await rt.store.append(conn, f"case-{row['case_id']}", [ev], ANY)
        await conn.execute(
            "UPDATE cases SET version = version + 1 WHERE case_id = $1", row["case_id"]
        )
        out = await conn.fetchrow(
            "UPDATE discrepancies SET status = 'resolved', note = $2, resolved_by = $3, "
            "resolved_at = $4 WHERE discrepancy_id = $1 RETURNING *",
            did,
            note,
            who.actor,
            now,
        )
    return dict(out)


# -- documents --------------------------------------------------------------------------------


async def receive_document(rt: Runtime, who: Principal, case_id: str, code: str) -> dict[str, Any]:
    now = rt.clock.now()
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await visible_case(conn, case_id, who, lock=True)
        if row["status"] == "cancelled":
            raise Conflict(f"case {case_id} is cancelled", state="cancelled")
        doc = await conn.fetchrow(
            "SELECT received_at FROM case_documents WHERE case_id = $1 AND code = $2",
            case_id,
            code,
        )
        if doc is None:
            raise NotFound(f"case {case_id} does not require document {code}")
        if doc["received_at"] is None:
            ev = DocumentReceived(case_id=case_id, document_code=code, received_by=who.actor)
            await _append_to_case(rt, conn, row, [ev])
            await conn.execute(
                "UPDATE case_documents SET received_at = $3, received_by = $4 "
                "WHERE case_id = $1 AND code = $2",
                case_id,
                code,
                now,
                who.actor,
            )
        return await case_view(conn, case_id)


async def set_checklist(
    rt: Runtime, who: Principal, insurer_code: str, loss_type: str, items: list[dict[str, str]]
) -> None:
    codes = [i["code"] for i in items]
    if len(set(codes)) != len(codes):
        raise invalid([(("items",), "document codes must be unique")])
    async with rt.pool.acquire() as conn:
        if not await conn.fetchval("SELECT true FROM insurers WHERE code = $1", insurer_code):
            raise NotFound(f"no insurer {insurer_code}")
        await conn.execute(
            "INSERT INTO document_checklists (insurer_code, loss_type, items, updated_at, "
            "updated_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (insurer_code, loss_type) "
            "DO UPDATE SET items = $3, updated_at = $4, updated_by = $5",
            insurer_code,
            loss_type,
            items,
            rt.clock.now(),
            who.actor,
        )
    documents.forget(rt)
