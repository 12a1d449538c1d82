"""The TaskTracker web frontend's whole flow, exactly as it calls the gateway.

The frontend is configured with `NEXT_PUBLIC_API_URL=http://localhost:8000/api/v1` and uses the
`/auth/*` spelling, JSON login, `{tasks, total, skip, limit}` lists, `PUT` partial updates,
`PATCH /tasks/{id}/complete` and `/stats/`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import ALL_SERVICES, is_problem, require_services, unique

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

TASK_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "is_completed",
    "due_date",
    "tags",
    "owner_id",
    "assignee_id",
    "depends_on",
    "blocked",
    "created_at",
    "updated_at",
    "completed_at",
    "version",
}


def ids(listing: dict[str, Any]) -> set[int]:
    return {task["id"] for task in listing["tasks"]}


def test_frontend_flow(client: httpx.Client) -> None:
    api = "/api/v1"
    username = unique("front")
    password = "correct horse battery staple"
    email = f"{username}@Example.com"

    # Register, then log in with JSON (the frontend never posts a form).
    registered = client.post(
        f"{api}/auth/register",
        json={"email": email, "username": username, "password": password, "full_name": "Fran"},
    )
    assert registered.status_code == 201, registered.text
    account = registered.json()
    assert account["username"] == username
    assert account["is_active"] is True
    assert account["is_superuser"] is False
    assert not any("password" in key for key in account), account

    login = client.post(f"{api}/auth/login", json={"username": username, "password": password})
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["expires_in"] > 0
    assert tokens["refresh_token"]
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}

    # The email also works as the login name.
    by_email = client.post(f"{api}/auth/login", json={"username": email, "password": password})
    assert by_email.status_code == 200, by_email.text

    me = client.get(f"{api}/auth/me", headers=auth)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == account["id"]
    assert me.json()["username"] == username

    # An empty list in the frontend's shape, both spellings of the path.
    for path in (f"{api}/tasks", f"{api}/tasks/"):
        empty = client.get(path, headers=auth)
        assert empty.status_code == 200, f"{path}: {empty.status_code} {empty.text}"
        assert empty.json() == {
            "tasks": [],
            "total": 0,
            "skip": 0,
            "limit": 20,
            "next_cursor": None,
            "total_exact": True,
        }

    # Create four tasks; `pending` is accepted and normalised to `todo`.
    def create(body: dict[str, Any], path: str = f"{api}/tasks/") -> dict[str, Any]:
        response = client.post(path, json=body, headers=auth)
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        assert response.headers["location"].endswith(f"/api/v1/tasks/{task['id']}")
        assert set(task) >= TASK_FIELDS, TASK_FIELDS - set(task)
        assert task["owner_id"] == account["id"]
        return task

    milk = create({"title": "Buy milk", "priority": "high", "status": "pending"})
    assert milk["status"] == "todo"
    assert milk["is_completed"] is False
    assert milk["completed_at"] is None
    report = create(
        {"title": "Write report", "description": "Quarterly numbers", "priority": "medium"},
        path=f"{api}/tasks",
    )
    plumber = create({"title": "Call plumber", "priority": "low", "status": "in_progress"})
    scratch = create({"title": "Scratch", "description": "to be deleted"})
    assert scratch["status"] == "todo"
    assert scratch["priority"] == "medium"  # the default

    listing = client.get(f"{api}/tasks/", headers=auth).json()
    assert listing["total"] == 4
    assert ids(listing) == {milk["id"], report["id"], plumber["id"], scratch["id"]}

    # PUT is a partial update: only the title changes.
    updated = client.put(
        f"{api}/tasks/{report['id']}", json={"title": "Write quarterly report"}, headers=auth
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["title"] == "Write quarterly report"
    assert updated.json()["description"] == "Quarterly numbers"
    assert updated.json()["priority"] == "medium"
    assert updated.json()["version"] > report["version"]

    completed = client.patch(f"{api}/tasks/{milk['id']}/complete", headers=auth)
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "done"
    assert completed.json()["is_completed"] is True
    assert completed.json()["completed_at"] is not None

    # The frontend's filters.
    def listed(params: dict[str, Any] | list[tuple[str, str]]) -> set[int]:
        response = client.get(f"{api}/tasks/", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert listed({"status": "done"}) == {milk["id"]}
    assert listed({"status": "todo"}) == {report["id"], scratch["id"]}
    assert listed([("status", "todo"), ("status", "in_progress")]) == {
        report["id"],
        plumber["id"],
        scratch["id"],
    }
    assert listed({"priority": "high"}) == {milk["id"]}
    assert listed({"search": "QUARTERLY"}) == {report["id"]}
    assert listed({"search": "plumb"}) == {plumber["id"]}
    assert listed({"search": "no such words"}) == set()

    # Delete: 204, then the task is gone for good.
    deleted = client.delete(f"{api}/tasks/{scratch['id']}", headers=auth)
    assert deleted.status_code == 204, deleted.text
    is_problem(client.get(f"{api}/tasks/{scratch['id']}", headers=auth), 404)
    assert client.get(f"{api}/tasks/", headers=auth).json()["total"] == 3

    # The dashboard's figures: 3 tasks, 1 done (first /stats/ call for this user: no cache).
    stats = client.get(f"{api}/stats/", headers=auth)
    assert stats.status_code == 200, stats.text
    figures = stats.json()
    assert figures["total_tasks"] == 3
    assert figures["completed_tasks"] == 1
    assert figures["completed_percentage"] == pytest.approx(100 / 3, abs=0.05)
    assert figures["by_status"]["todo"] == 1
    assert figures["by_status"]["in_progress"] == 1
    assert figures["by_status"]["done"] == 1
    assert figures["by_priority"]["high"] == 1
    assert figures["by_priority"]["medium"] == 1
    assert figures["by_priority"]["low"] == 1
    for key in ("overdue", "due_next_7_days", "completed_last_7_days", "generated_at"):
        assert key in figures, key
    assert figures["completed_last_7_days"] == 1
    # Same answer without the trailing slash.
    assert client.get(f"{api}/stats", headers=auth).json()["total_tasks"] == 3


def test_stats_of_a_new_user_are_zero_not_an_error(client: httpx.Client) -> None:
    from tests.harness import register_and_login

    newcomer = register_and_login(client, "zero")
    stats = client.get("/api/v1/stats/", headers=newcomer.headers)
    assert stats.status_code == 200, stats.text
    assert stats.json()["total_tasks"] == 0
    assert stats.json()["completed_tasks"] == 0
    assert stats.json()["completed_percentage"] == 0
