"""Demo roster: about 60 surveyors in 8 survey teams (查勘组) across Shanghai, seeded once."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING

from claimdesk.auth import issue_token

from dispatch import handlers

if TYPE_CHECKING:
    from claimdesk.service import Runtime

# (team, district, centre lat, centre lon)
TEAMS = [
    ("黄浦查勘组", "黄浦区", 31.2317, 121.4846),
    ("浦东一组", "浦东新区", 31.2215, 121.5447),
    ("浦东二组", "浦东新区", 31.1530, 121.6560),
    ("徐汇查勘组", "徐汇区", 31.1885, 121.4365),
    ("闵行查勘组", "闵行区", 31.1128, 121.3816),
    ("静安普陀组", "静安区", 31.2520, 121.4480),
    ("宝山查勘组", "宝山区", 31.4050, 121.4890),
    ("嘉定青浦组", "嘉定区", 31.3747, 121.2655),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["建国", "志强", "海燕", "伟", "磊", "静", "军", "敏", "俊杰", "丽", "涛", "洋", "超", "勇"]


async def seed(rt: Runtime) -> list[tuple[str, str, str]]:
    """Register the demo roster (fixed ids, so a restart adds nothing); returns (id, name, team)."""
    ds = handlers.dsettings(rt)
    rnd = random.Random(20261126)  # noqa: S311 - demo data
    out: list[tuple[str, str, str]] = []
    teams = TEAMS[: ds.demo_teams]
    async with rt.pool.acquire() as conn:
        for i in range(ds.demo_surveyors):
            team, _district, lat, lon = teams[i % len(teams)]
            sid = f"S-DEMO-{i + 1:03d}"
            name = rnd.choice(SURNAMES) + rnd.choice(GIVEN)
            skills = ["vehicle"]
            if i % 3 == 0:
                skills.append("injury")
            if i % 4 == 0:
                skills.append("property")
            if i % 7 == 0:
                skills.append("heavy_vehicle")
            shifts = (
                [{"days": list(range(7)), "start": "08:00", "end": "20:00"}]
                if i % 5
                else [{"days": list(range(7)), "start": "20:00", "end": "08:00"}]
            )
            await handlers.register_surveyor(
                rt,
                conn,
                handlers.NewSurveyor(
                    surveyor_id=sid,
                    name=name,
                    phone=f"139{rnd.randrange(10**8):08d}",
                    team=team,
                    skills=skills,
                    regions=[],  # demo teams help across the city; the policy prefers the nearest
                    base_lat=lat + rnd.uniform(-0.03, 0.03),
                    base_lon=lon + rnd.uniform(-0.03, 0.03),
                    capacity=3,
                    shifts=shifts,
                ),
            )
            out.append((sid, name, team))
    return out


async def write_credentials(rt: Runtime, roster: list[tuple[str, str, str]]) -> None:
    """Demo: the pages and tokens for five surveyors (dispatch owns surveyors; staff such as
    dispatchers belong to intake, whose list carries their tokens)."""
    s = rt.settings
    now = rt.clock.now()
    ttl = timedelta(seconds=s.token_ttl_s)
    lines = [
        "# dispatch: the board takes a dispatcher token from intake's list (D001); surveyors below",
        f"dispatcher board : {s.url('dispatch')}/board",
        f"surveyor page    : {s.url('dispatch')}/surveyor",
    ]
    async with rt.pool.acquire() as conn:  # a rotated demo token: sign the current generation
        rows = await conn.fetch(
            "SELECT surveyor_id, token_generation FROM surveyors "
            "WHERE surveyor_id = ANY($1::text[]) AND NOT retired",
            [sid for sid, _, _ in roster[:5]],
        )
    generations = {r["surveyor_id"]: r["token_generation"] for r in rows}
    for sid, name, team in roster[:5]:
        if sid not in generations:
            continue  # retired
        token, _ = issue_token(
            s.secret(),
            subject=sid,
            role="surveyor",
            now=now,
            ttl=ttl,
            name=name,
            number=sid,
            team=team,
            generation=generations[sid],
        )
        lines.append(f"surveyor {sid} {name} ({team}): {token}")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    (s.data_dir / "credentials-dispatch.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
