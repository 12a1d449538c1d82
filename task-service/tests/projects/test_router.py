"""Projects API over HTTP against a real database and Redis (user-service faked with respx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from task_factories import FakeUserService, auth, create_project
from task_service.tasks.events import OUTBOX

pytestmark = pytest.mark.usefixtures("client")


async def events_of(app: FastAPI, prefix: str = "project.") -> list[dict[str, Any]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(OUTBOX.c.payload).where(OUTBOX.c.type.startswith(prefix)).order_by(OUTBOX.c.id)
        )
        return [json.loads(payload) for payload in rows.scalars()]


async def test_create_returns_the_project_with_the_callers_role(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post(
        "/api/v1/projects/",
        json={"name": "  Launch  ", "description": "the spring launch"},
        headers=auth(1),
    )
    assert response.status_code == 201, response.text
    project = response.json()
    assert response.headers["Location"] == f"/api/v1/projects/{project['id']}"
    assert response.headers["ETag"] == 'W/"1"'
    assert project["name"] == "Launch"
    assert project["description"] == "the spring launch"
    assert project["owner_id"] == 1
    assert project["role"] == "owner"
    assert project["member_count"] == 1
    assert project["version"] == 1
    assert "created_at" in project
    [event] = await events_of(app)
    assert event["type"] == "project.created"
    assert event["data"]["audience"] == [1]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": 5},
        {"name": "a\x00b"},
        {"name": "ok", "owner_id": 2},
    ],
)
async def test_bad_project_bodies_are_422_problems(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/api/v1/projects/", json=body, headers=auth(1))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_name_of_100_characters_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/projects/", json={"name": "x" * 100}, headers=auth(1))
    assert response.status_code == 201


async def test_non_members_get_404_for_every_route(client: httpx.AsyncClient) -> None:
    project = await create_project(client, owner=1, members=[2])
    base = f"/api/v1/projects/{project['id']}"
    outsider = auth(3)
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"name": "mine now"}),
        ("DELETE", base, None),
        ("GET", f"{base}/members", None),
        ("POST", f"{base}/members", {"user_id": 3}),
        ("DELETE", f"{base}/members/2", None),
    ]:
        response = await client.request(method, path, json=body, headers=outsider)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["detail"] == f"Project {project['id']} not found"
    missing = await client.get("/api/v1/projects/999999", headers=auth(1))
    assert missing.status_code == 404
    assert missing.json()["detail"] == "Project 999999 not found"


async def test_list_shows_only_my_projects_with_role_and_member_count(
    client: httpx.AsyncClient,
) -> None:
    beta = await create_project(client, owner=1, name="beta", members=[2, (3, "admin")])
    alpha = await create_project(client, owner=2, name="Alpha")
    await create_project(client, owner=3, name="gamma")
    for path in ("/api/v1/projects/", "/api/v1/projects"):
        response = await client.get(path, headers=auth(2))
        assert response.status_code == 200
        listed = response.json()["projects"]
        assert [(p["id"], p["role"], p["member_count"]) for p in listed] == [
            (alpha["id"], "owner", 1),
            (beta["id"], "member", 3),
        ]
    nothing = await client.get("/api/v1/projects/", headers=auth(7))
    assert nothing.json() == {"projects": []}


async def test_rename_is_for_owner_and_admins_with_if_match(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2, (3, "admin")])
    path = f"/api/v1/projects/{project['id']}"
    denied = await client.patch(path, json={"name": "by a member"}, headers=auth(2))
    assert denied.status_code == 403
    renamed = await client.patch(
        path, json={"name": "Renamed"}, headers={**auth(3), "If-Match": 'W/"1"'}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed"
    assert renamed.json()["role"] == "admin"
    assert renamed.headers["ETag"] == 'W/"2"'
    stale = await client.patch(
        path, json={"name": "Stale"}, headers={**auth(1), "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    cleared = await client.patch(path, json={"description": None}, headers=auth(1))
    assert cleared.status_code == 200
    assert cleared.json()["description"] is None
    unchanged = await client.patch(path, json={"name": "Renamed"}, headers=auth(1))
    assert unchanged.json()["version"] == 2
    null_name = await client.patch(path, json={"name": None}, headers=auth(1))
    assert null_name.status_code == 422
    update = (await events_of(app, "project.updated"))[-1]
    assert update["data"]["project"]["name"] == "Renamed"
    assert update["data"]["audience"] == [1, 2, 3]


async def test_only_the_owner_deletes_a_project_and_its_tasks_go_with_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    project = await create_project(client, owner=1, members=[2, (3, "admin")])
    path = f"/api/v1/projects/{project['id']}"
    for member in (2, 3):
        assert (await client.delete(path, headers=auth(member))).status_code == 403
    deleted = await client.delete(path, headers=auth(1))
    assert deleted.status_code == 204
    assert (await client.get(path, headers=auth(1))).status_code == 404
    [event] = await events_of(app, "project.deleted")
    assert event["data"]["audience"] == [1, 2, 3]


async def test_members_add_list_and_conflicts(
    client: httpx.AsyncClient, app: FastAPI, user_service: FakeUserService
) -> None:
    user_service.inactive.add(8)
    user_service.active.discard(8)
    project = await create_project(client, owner=1)
    members = f"/api/v1/projects/{project['id']}/members"
    added = await client.post(members, json={"user_id": 2, "role": "admin"}, headers=auth(1))
    assert added.status_code == 201, added.text
    assert added.json()["user_id"] == 2
    assert added.json()["role"] == "admin"
    by_admin = await client.post(members, json={"user_id": 3}, headers=auth(2))
    assert by_admin.status_code == 201
    assert by_admin.json()["role"] == "member"
    by_member = await client.post(members, json={"user_id": 4}, headers=auth(3))
    assert by_member.status_code == 403
    again = await client.post(members, json={"user_id": 3}, headers=auth(1))
    assert again.status_code == 409
    for user_id in (8, 404):  # inactive, unknown
        refused = await client.post(members, json={"user_id": user_id}, headers=auth(1))
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["loc"] == ["body", "user_id"]
    for body in ({"user_id": 4, "role": "owner"}, {"user_id": 0}, {"role": "member"}):
        assert (await client.post(members, json=body, headers=auth(1))).status_code == 422
    listed = await client.get(members, headers=auth(3))
    assert listed.status_code == 200
    assert [(m["user_id"], m["role"]) for m in listed.json()["members"]] == [
        (1, "owner"),
        (2, "admin"),
        (3, "member"),
    ]
    added_events = await events_of(app, "project.member_added")
    assert [e["data"]["member"]["user_id"] for e in added_events] == [2, 3]
    assert added_events[-1]["data"]["audience"] == [1, 2, 3]


async def test_remove_leave_and_the_owner_stays(client: httpx.AsyncClient, app: FastAPI) -> None:
    project = await create_project(client, owner=1, members=[2, 3, (4, "admin")])
    members = f"/api/v1/projects/{project['id']}/members"
    assert (await client.delete(f"{members}/3", headers=auth(2))).status_code == 403
    assert (await client.delete(f"{members}/1", headers=auth(4))).status_code == 403
    assert (await client.delete(f"{members}/1", headers=auth(1))).status_code == 403
    assert (await client.delete(f"{members}/3", headers=auth(4))).status_code == 204
    assert (await client.delete(f"{members}/3", headers=auth(4))).status_code == 404
    assert (await client.delete(f"{members}/2", headers=auth(2))).status_code == 204
    # Gone means gone: the project is not found for them any more.
    assert (
        await client.get(f"/api/v1/projects/{project['id']}", headers=auth(2))
    ).status_code == 404
    removed = await events_of(app, "project.member_removed")
    assert [(e["data"]["user_id"], e["data"]["reason"]) for e in removed] == [
        (3, "removed"),
        (2, "left"),
    ]
    assert removed[0]["data"]["audience"] == [1, 2, 3, 4]
    assert removed[1]["data"]["audience"] == [1, 2, 4]
