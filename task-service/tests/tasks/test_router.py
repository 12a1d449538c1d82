"""Tasks API over HTTP against a real database and Redis (user-service faked with respx)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from task_factories import FakeUserService, auth, create_task
from task_service.users.repository import KnownUserRepository

pytestmark = pytest.mark.usefixtures("client")


async def test_create_returns_full_task_shape_with_location_and_etag(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/tasks/",
        json={
            "title": "  Write docs ",
            "description": "all of them",
            "priority": "high",
            "tags": ["Docs", " urgent", "docs", ""],
            "due_date": "2030-01-02T03:04:05",
        },
        headers=auth(1),
    )
    assert response.status_code == 201
    task = response.json()
    assert response.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert response.headers["ETag"] == 'W/"1"'
    assert task["title"] == "Write docs"
    assert task["status"] == "todo"
    assert task["is_completed"] is False
    assert task["priority"] == "high"
    assert task["tags"] == ["docs", "urgent"]
    assert task["due_date"] in ("2030-01-02T03:04:05Z", "2030-01-02T03:04:05+00:00")
    assert task["owner_id"] == 1
    assert task["assignee_id"] is None
    assert task["depends_on"] == []
    assert task["blocked"] is False
    assert task["completed_at"] is None
    assert task["version"] == 1
    assert datetime.fromisoformat(task["created_at"]).tzinfo is not None


async def test_both_list_spellings_and_no_redirect(client: httpx.AsyncClient) -> None:
    await create_task(client)
    for path in ("/api/v1/tasks/", "/api/v1/tasks"):
        response = await client.get(path, headers=auth(1))
        assert response.status_code == 200
        body = response.json()
        assert body["total"] == 1
        assert body["skip"] == 0
        assert body["limit"] == 20
    response = await client.post("/api/v1/tasks", json={"title": "no slash"}, headers=auth(1))
    assert response.status_code == 201


async def test_aware_due_date_is_converted_to_utc(client: httpx.AsyncClient) -> None:
    task = await create_task(client, due_date="2030-01-02T05:00:00+02:00")
    assert datetime.fromisoformat(task["due_date"]) == datetime(2030, 1, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "status", "is_completed"),
    [
        ({"status": "pending"}, "todo", False),
        ({"status": "completed"}, "done", True),
        ({"status": "in_progress"}, "in_progress", False),
        ({"is_completed": True}, "done", True),
        ({"is_completed": False}, "todo", False),
    ],
)
async def test_status_inputs_are_normalised(
    client: httpx.AsyncClient, given: dict[str, object], status: str, is_completed: bool
) -> None:
    task = await create_task(client, **given)
    assert task["status"] == status
    assert task["is_completed"] is is_completed
    assert (task["completed_at"] is not None) is is_completed


@pytest.mark.parametrize(
    "field", ["id", "owner_id", "version", "created_at", "updated_at", "completed_at", "blocked"]
)
async def test_server_fields_are_not_client_settable(client: httpx.AsyncClient, field: str) -> None:
    response = await client.post("/api/v1/tasks/", json={"title": "x", field: 7}, headers=auth(1))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    task = await create_task(client)
    response = await client.patch(f"/api/v1/tasks/{task['id']}", json={field: 7}, headers=auth(1))
    assert response.status_code == 422


async def test_contradicting_status_and_is_completed_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/tasks/",
        json={"title": "x", "status": "todo", "is_completed": True},
        headers=auth(1),
    )
    assert response.status_code == 422


async def test_invalid_input_is_problem_422_without_echo(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/tasks/", json={"title": "", "priority": "secret-value"}, headers=auth(1)
    )
    assert response.status_code == 422
    assert "secret-value" not in response.text
    assert response.json()["errors"]


async def test_requires_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tasks/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_get_patch_put_delete_round_trip(client: httpx.AsyncClient) -> None:
    task = await create_task(client, title="first")
    url = f"/api/v1/tasks/{task['id']}"
    response = await client.get(url, headers=auth(1))
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'

    response = await client.patch(url, json={"title": "second"}, headers=auth(1))
    assert response.status_code == 200
    assert response.json()["title"] == "second"
    assert response.json()["version"] == 2
    assert response.headers["ETag"] == 'W/"2"'

    response = await client.put(url, json={"priority": "urgent"}, headers=auth(1))
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "second"  # PUT is partial too
    assert body["priority"] == "urgent"
    assert body["version"] == 3

    response = await client.patch(
        url, json={"description": None, "due_date": None}, headers=auth(1)
    )
    assert response.status_code == 200
    assert response.json()["version"] == 3  # nothing changed, no new version

    assert (await client.delete(url, headers=auth(1))).status_code == 204
    assert (await client.get(url, headers=auth(1))).status_code == 404


async def test_null_for_required_field_is_422(client: httpx.AsyncClient) -> None:
    task = await create_task(client)
    response = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"title": None}, headers=auth(1)
    )
    assert response.status_code == 422


async def test_status_transitions_keep_completed_at_and_is_completed_consistent(
    client: httpx.AsyncClient,
) -> None:
    task = await create_task(client)
    url = f"/api/v1/tasks/{task['id']}"
    done = (await client.patch(f"{url}/complete", headers=auth(1))).json()
    assert (done["status"], done["is_completed"]) == ("done", True)
    assert done["completed_at"] is not None

    again = (await client.patch(f"{url}/complete", headers=auth(1))).json()
    assert again["version"] == done["version"]  # already done: no change

    reopened = (await client.patch(f"{url}/incomplete", headers=auth(1))).json()
    assert (reopened["status"], reopened["completed_at"]) == ("todo", None)

    toggled = (await client.post(f"{url}/toggle", headers=auth(1))).json()
    assert toggled["status"] == "done"
    toggled = (await client.post(f"{url}/toggle", headers=auth(1))).json()
    assert toggled["status"] == "todo"

    patched = (await client.patch(url, json={"is_completed": True}, headers=auth(1))).json()
    assert patched["status"] == "done"
    patched = (await client.patch(url, json={"status": "in_progress"}, headers=auth(1))).json()
    assert (patched["status"], patched["completed_at"]) == ("in_progress", None)
    patched = (await client.patch(url, json={"is_completed": False}, headers=auth(1))).json()
    assert patched["status"] == "in_progress"
    patched = (await client.patch(url, json={"status": "completed"}, headers=auth(1))).json()
    assert (patched["status"], patched["is_completed"]) == ("done", True)


async def test_strangers_get_404_on_every_route(client: httpx.AsyncClient) -> None:
    task = await create_task(client, owner=1)
    other = await create_task(client, owner=2)
    url = f"/api/v1/tasks/{task['id']}"
    stranger = auth(2)
    calls = [
        client.get(url, headers=stranger),
        client.patch(url, json={"title": "x"}, headers=stranger),
        client.put(url, json={"title": "x"}, headers=stranger),
        client.delete(url, headers=stranger),
        client.patch(f"{url}/complete", headers=stranger),
        client.patch(f"{url}/incomplete", headers=stranger),
        client.post(f"{url}/toggle", headers=stranger),
        client.get(f"{url}/dependencies", headers=stranger),
        client.get(f"{url}/dependency-tree", headers=stranger),
        client.post(f"{url}/dependencies", json={"depends_on_id": other["id"]}, headers=stranger),
        client.delete(f"{url}/dependencies/{other['id']}", headers=stranger),
        # and a task of theirs may not depend on a task they cannot see
        client.post(
            f"/api/v1/tasks/{other['id']}/dependencies",
            json={"depends_on_id": task["id"]},
            headers=stranger,
        ),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404, response.request.url
        assert response.headers["content-type"].startswith("application/problem+json")
    listing = (await client.get("/api/v1/tasks/", headers=stranger)).json()
    assert [t["id"] for t in listing["tasks"]] == [other["id"]]


async def test_assignee_sees_task_and_may_change_status_only(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    task = await create_task(client, owner=1, assignee_id=2, title="shared")
    url = f"/api/v1/tasks/{task['id']}"
    assert (await client.get(url, headers=auth(2))).status_code == 200

    response = await client.patch(url, json={"title": "mine now"}, headers=auth(2))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    # re-sending unchanged values is fine (frontends send whole objects)
    response = await client.put(
        url, json={"title": "shared", "status": "in_progress"}, headers=auth(2)
    )
    assert response.status_code == 200
    assert response.json()["status"] == "in_progress"
    assert (await client.patch(f"{url}/complete", headers=auth(2))).json()["status"] == "done"
    assert (await client.delete(url, headers=auth(2))).status_code == 403
    other = await create_task(client, owner=2)
    response = await client.post(
        f"{url}/dependencies", json={"depends_on_id": other["id"]}, headers=auth(2)
    )
    assert response.status_code == 403


async def test_assignee_must_be_an_active_user(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    user_service.inactive.add(42)
    for missing in (42, 4242):
        response = await client.post(
            "/api/v1/tasks/", json={"title": "x", "assignee_id": missing}, headers=auth(1)
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "assignee_id"]
    headers = auth(1)
    response = await client.post(
        "/api/v1/tasks/", json={"title": "x", "assignee_id": 3}, headers=headers
    )
    task = response.json()
    assert task["assignee_id"] == 3
    # the caller's token is forwarded to user-service
    assert user_service.authorizations[-1] == headers["Authorization"]
    response = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"assignee_id": 4242}, headers=auth(1)
    )
    assert response.status_code == 422
    response = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"assignee_id": None}, headers=auth(1)
    )
    assert response.json()["assignee_id"] is None


async def test_users_known_from_events_need_no_call(
    client: httpx.AsyncClient, app: FastAPI, user_service: FakeUserService
) -> None:
    async with app.state.pool.acquire() as connection:
        known = KnownUserRepository(connection)
        now = datetime.now(UTC)
        await known.record(5, username="five", is_active=True, deleted=False, event_at=now)
        await known.record(6, username="six", is_active=False, deleted=False, event_at=now)
    await create_task(client, assignee_id=5)
    await create_task(client, assignee_id=6, expect=422)  # deactivated, as the event said
    assert user_service.calls.count(5) == 0
    assert user_service.calls.count(6) == 0
    await create_task(client, assignee_id=4242, expect=422)
    await create_task(client, assignee_id=4242, expect=422)
    assert user_service.calls.count(4242) == 2  # unknown users are asked every time


async def test_stale_if_match_is_412_and_current_one_passes(client: httpx.AsyncClient) -> None:
    task = await create_task(client)
    url = f"/api/v1/tasks/{task['id']}"
    response = await client.patch(
        url, json={"title": "b"}, headers={**auth(1), "If-Match": 'W/"1"'}
    )
    assert response.status_code == 200
    for stale in ('W/"1"', '"1"', "1", "garbage"):
        response = await client.patch(
            url, json={"title": "c"}, headers={**auth(1), "If-Match": stale}
        )
        assert response.status_code == 412
        assert response.json()["current_version"] == 2
    for current in ('"2"', "*"):
        response = await client.patch(
            url, json={"priority": "low"}, headers={**auth(1), "If-Match": current}
        )
        assert response.status_code == 200
    response = await client.delete(url, headers={**auth(1), "If-Match": 'W/"2"'})
    assert response.status_code == 412
    response = await client.post(f"{url}/toggle", headers={**auth(1), "If-Match": 'W/"2"'})
    assert response.status_code == 412
    assert (await client.delete(url, headers={**auth(1), "If-Match": 'W/"3"'})).status_code == 204


async def test_unknown_task_is_404_and_bad_id_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/tasks/999999", headers=auth(1))).status_code == 404
    assert (await client.get("/api/v1/tasks/0", headers=auth(1))).status_code == 422
    assert (await client.get("/api/v1/tasks/abc", headers=auth(1))).status_code == 422


async def test_overdue_due_filters_and_search(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    late = await create_task(
        client, title="Late report", due_date=(now - timedelta(days=1)).isoformat()
    )
    await create_task(
        client, title="late but done", due_date=(now - timedelta(days=1)).isoformat(), status="done"
    )
    soon = await create_task(
        client,
        title="Soon",
        description="100% sure_thing",
        due_date=(now + timedelta(days=1)).isoformat(),
    )
    await create_task(client, title="no date")

    async def ids(**params: object) -> list[int]:
        response = await client.get("/api/v1/tasks/", params=params, headers=auth(1))
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tasks"]]

    assert await ids(overdue="true") == [late["id"]]
    assert await ids(search="LATE R") == [late["id"]]
    assert await ids(search="100%") == [soon["id"]]
    assert await ids(search="sur_") == []  # _ is literal, not a wildcard
    assert await ids(search="sure_thing") == [soon["id"]]
    assert await ids(due_after=now.isoformat()) == [soon["id"]]
    assert len(await ids(due_before=now.replace(tzinfo=None).isoformat())) == 2


async def test_list_filters_status_priority_tags_scope(
    client: httpx.AsyncClient, user_service: FakeUserService
) -> None:
    a = await create_task(client, owner=1, status="pending", priority="low", tags=["x", "y"])
    b = await create_task(client, owner=1, status="done", priority="urgent", tags=["x"])
    c = await create_task(client, owner=2, assignee_id=1, status="in_progress", priority="high")

    async def ids(**params: object) -> list[int]:
        response = await client.get("/api/v1/tasks/", params=params, headers=auth(1))
        assert response.status_code == 200, response.text
        return sorted(t["id"] for t in response.json()["tasks"])

    assert await ids() == sorted([a["id"], b["id"], c["id"]])
    assert await ids(status=["pending", "completed"]) == sorted([a["id"], b["id"]])
    assert await ids(status="todo,in_progress") == sorted([a["id"], c["id"]])
    assert await ids(priority=["urgent", "high"]) == sorted([b["id"], c["id"]])
    assert await ids(tags="x,y") == [a["id"]]
    assert await ids(tags="X") == sorted([a["id"], b["id"]])
    assert await ids(scope="owned") == sorted([a["id"], b["id"]])
    assert await ids(scope="assigned") == [c["id"]]
    assert await ids(assignee_id=1) == [c["id"]]
    bad = await client.get("/api/v1/tasks/", params={"status": "nope"}, headers=auth(1))
    assert bad.status_code == 422
    assert (
        await client.get("/api/v1/tasks/", params={"limit": 0}, headers=auth(1))
    ).status_code == 422
    assert (
        await client.get("/api/v1/tasks/", params={"skip": -1}, headers=auth(1))
    ).status_code == 422
    capped = await client.get("/api/v1/tasks/", params={"limit": 1000}, headers=auth(1))
    assert capped.json()["limit"] == 100


async def test_sort_by_priority_uses_rank(client: httpx.AsyncClient) -> None:
    for priority in ("medium", "urgent", "low", "high"):
        await create_task(client, priority=priority)
    response = await client.get(
        "/api/v1/tasks/", params={"sort_by": "priority", "sort_order": "asc"}, headers=auth(1)
    )
    assert [t["priority"] for t in response.json()["tasks"]] == ["low", "medium", "high", "urgent"]


async def test_nul_characters_are_422_not_500(client: httpx.AsyncClient) -> None:
    for body in (
        {"title": "a\x00b"},
        {"title": "x", "description": "\x00"},
        {"title": "x", "tags": ["\x00"]},
    ):
        response = await client.post("/api/v1/tasks/", json=body, headers=auth(1))
        assert response.status_code == 422
    response = await client.get("/api/v1/tasks/", params={"search": "a\x00"}, headers=auth(1))
    assert response.status_code == 422
