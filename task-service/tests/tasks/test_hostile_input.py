"""Hostile input to the tasks API answers 4xx, never 5xx (issue 9, items 2 and 3)."""

from __future__ import annotations

import httpx
import pytest
from task_factories import auth, create_task

pytestmark = pytest.mark.usefixtures("client")

OUT_OF_RANGE = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"]


@pytest.mark.parametrize("due", OUT_OF_RANGE)
async def test_due_date_leaving_range_in_utc_is_422_on_every_write(
    client: httpx.AsyncClient, due: str
) -> None:
    created = await client.post(
        "/api/v1/tasks/", json={"title": "edge", "due_date": due}, headers=auth(1)
    )
    assert created.status_code == 422
    assert created.json()["errors"][0]["loc"] == ["body", "due_date"]
    task = await create_task(client, owner=1, title="existing")
    for method in ("PUT", "PATCH"):
        response = await client.request(
            method, f"/api/v1/tasks/{task['id']}", json={"due_date": due}, headers=auth(1)
        )
        assert response.status_code == 422, method


@pytest.mark.parametrize("due", OUT_OF_RANGE)
@pytest.mark.parametrize("name", ["due_before", "due_after"])
async def test_due_filter_leaving_range_in_utc_is_422(
    client: httpx.AsyncClient, due: str, name: str
) -> None:
    response = await client.get("/api/v1/tasks/", params={name: due}, headers=auth(1))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:2] == ["query", name]


# Header bytes are latin-1: 0xB2, 0xB3 and 0xB9 are the superscript digits str.isdigit accepts.
@pytest.mark.parametrize("tag", ['W/"\xb2"', '"\xb3\xb9"', 'W/"' + "9" * 5000 + '"'])
@pytest.mark.parametrize(
    ("method", "suffix"), [("PATCH", ""), ("DELETE", ""), ("PATCH", "/complete")]
)
async def test_unparseable_if_match_is_412_not_500(
    client: httpx.AsyncClient, tag: str, method: str, suffix: str
) -> None:
    task = await create_task(client, owner=1, title="guarded")
    response = await client.request(
        method,
        f"/api/v1/tasks/{task['id']}{suffix}",
        json={"title": "x"} if suffix == "" and method == "PATCH" else None,
        headers={**auth(1), "If-Match": tag.encode("latin-1")},
    )
    assert response.status_code == 412


@pytest.mark.parametrize("value", [0, 1.5, "0.5", "1700000000"])
async def test_numbers_are_not_date_times(client: httpx.AsyncClient, value: object) -> None:
    """The schema says format: date-time; pydantic alone would read numbers as timestamps."""
    created = await client.post(
        "/api/v1/tasks/", json={"title": "n", "due_date": value}, headers=auth(1)
    )
    assert created.status_code == 422
    listed = await client.get("/api/v1/tasks/", params={"due_before": str(value)}, headers=auth(1))
    assert listed.status_code == 422


@pytest.mark.parametrize("value", [True, False, "2", 2.0])
@pytest.mark.parametrize("field", ["assignee_id", "project_id", "depends_on"])
async def test_ids_in_a_body_are_json_integers_not_coerced(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    """`true` would otherwise become id 1 (schemathesis found `assignee_id: true` accepted)."""
    body = {"title": "typed", field: [value] if field == "depends_on" else value}
    created = await client.post("/api/v1/tasks/", json=body, headers=auth(1))
    assert created.status_code == 422, created.text
    assert created.json()["errors"][0]["loc"][:2] == ["body", field]
    task = await create_task(client, owner=1, title="existing")
    if field == "assignee_id":
        patched = await client.patch(
            f"/api/v1/tasks/{task['id']}", json={field: value}, headers=auth(1)
        )
        assert patched.status_code == 422
    else:
        linked = await client.post(
            f"/api/v1/tasks/{task['id']}/dependencies",
            json={"depends_on_id": value},
            headers=auth(1),
        )
        assert linked.status_code == 422
    listed = await client.get("/api/v1/tasks/", params={"assignee_id": "1"}, headers=auth(1))
    assert listed.status_code == 200  # a query string's "1" is still an id
