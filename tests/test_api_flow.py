"""The richer API, as scripts use it: `/users/` accounts, OAuth2 form login, tags, sorting,
pagination, dependencies, assignment, visibility, optimistic concurrency and idempotency.

Everything goes through the gateway.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    User,
    is_problem,
    register_and_login,
    require_services,
    unique,
)

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

API = "/api/v1"


def create_task(client: httpx.Client, user: User, **body: Any) -> dict[str, Any]:
    body.setdefault("title", unique("task "))
    response = client.post(f"{API}/tasks/", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def listed_ids(client: httpx.Client, user: User, params: Any) -> list[int]:
    response = client.get(f"{API}/tasks/", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()["tasks"]]


@pytest.fixture
def owner(client: httpx.Client) -> User:
    return register_and_login(client, "owner", richer=True)


def test_users_register_login_form_and_directory(client: httpx.Client) -> None:
    someone = register_and_login(client, "script", richer=True)
    me = client.get(f"{API}/users/me", headers=someone.headers)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == someone.username

    # Taken username, in another case, on the other spelling: 409.
    taken = client.post(
        f"{API}/auth/register",
        json={
            "email": unique("other") + "@example.com",
            "username": someone.username.upper(),
            "password": "long enough password",
        },
    )
    is_problem(taken, 409)

    # Wrong password and unknown user: the same 401.
    wrong = client.post(
        f"{API}/users/login", data={"username": someone.username, "password": "not-the-password"}
    )
    unknown = client.post(
        f"{API}/users/login", data={"username": unique("ghost"), "password": "not-the-password"}
    )
    assert is_problem(wrong, 401)["detail"] == is_problem(unknown, 401)["detail"]

    # Public profile and directory.
    profile = client.get(f"{API}/users/{someone.id}", headers=someone.headers)
    assert profile.status_code == 200, profile.text
    public = profile.json()
    assert public["id"] == someone.id
    assert public["username"] == someone.username
    assert public["full_name"] == "script"
    assert "email" not in public  # a public profile, not the account
    directory = client.get(f"{API}/users/", params={"q": someone.username}, headers=someone.headers)
    assert directory.status_code == 200, directory.text
    assert someone.id in {entry["id"] for entry in directory_entries(directory.json())}


def directory_entries(body: Any) -> list[dict[str, Any]]:
    """The directory is a list of profiles, possibly wrapped in a page object."""
    if isinstance(body, list):
        return body
    for key in ("users", "items", "results"):
        if isinstance(body.get(key), list):
            entries: list[dict[str, Any]] = body[key]
            return entries
    raise AssertionError(f"unrecognised directory shape: {body}")


def test_tags_filter_requires_every_tag(client: httpx.Client, owner: User) -> None:
    both = create_task(client, owner, tags=["work", "urgent"])
    work = create_task(client, owner, tags=["Work"])  # normalised to lower case
    home = create_task(client, owner, tags=["home"])
    create_task(client, owner)  # no tags

    assert set(listed_ids(client, owner, {"tags": "work"})) == {both["id"], work["id"]}
    assert set(listed_ids(client, owner, {"tags": "work,urgent"})) == {both["id"]}
    assert set(listed_ids(client, owner, {"tags": "urgent,work"})) == {both["id"]}
    assert set(listed_ids(client, owner, {"tags": "home"})) == {home["id"]}
    assert listed_ids(client, owner, {"tags": "work,home"}) == []


def test_sorting_by_priority_uses_rank_and_paging_is_exact(
    client: httpx.Client, owner: User
) -> None:
    created = {
        priority: create_task(client, owner, title=f"{priority} task", priority=priority)["id"]
        for priority in ("medium", "urgent", "low", "high")
    }
    by_rank_desc = listed_ids(client, owner, {"sort_by": "priority", "sort_order": "desc"})
    assert by_rank_desc == [created[p] for p in ("urgent", "high", "medium", "low")]
    by_rank_asc = listed_ids(client, owner, {"sort_by": "priority", "sort_order": "asc"})
    assert by_rank_asc == [created[p] for p in ("low", "medium", "high", "urgent")]
    by_title = listed_ids(client, owner, {"sort_by": "title", "sort_order": "asc"})
    assert by_title == [created[p] for p in ("high", "low", "medium", "urgent")]

    for index in range(3):
        create_task(client, owner, title=f"extra {index}")
    everything = listed_ids(client, owner, {"limit": 100})
    assert len(everything) == 7
    seen: list[int] = []
    for skip in range(0, 9, 3):
        page = client.get(
            f"{API}/tasks/", params={"skip": skip, "limit": 3}, headers=owner.headers
        ).json()
        assert page["total"] == 7
        assert page["skip"] == skip
        assert page["limit"] == 3
        seen.extend(task["id"] for task in page["tasks"])
    assert seen == everything  # every task once, in the same (stable) order

    for bad in ({"limit": 0}, {"skip": -1}, {"sort_by": "owner_id"}, {"status": "lost"}):
        is_problem(client.get(f"{API}/tasks/", params=bad, headers=owner.headers), 422)
    capped = client.get(f"{API}/tasks/", params={"limit": 1000}, headers=owner.headers)
    assert capped.status_code == 200, capped.text
    assert capped.json()["limit"] == 100  # larger limits are capped (issue 3)


def test_dependencies_cycles_blocked_completion_and_tree(client: httpx.Client, owner: User) -> None:
    ship = create_task(client, owner, title="ship")
    test = create_task(client, owner, title="test")
    build = create_task(client, owner, title="build")

    def depend(task: dict[str, Any], on: dict[str, Any]) -> httpx.Response:
        return client.post(
            f"{API}/tasks/{task['id']}/dependencies",
            json={"depends_on_id": on["id"]},
            headers=owner.headers,
        )

    added = depend(ship, test)
    assert added.status_code == 201, added.text
    assert added.json()["depends_on"] == [test["id"]]
    assert added.json()["blocked"] is True
    assert depend(test, build).status_code == 201

    cycle = is_problem(depend(build, ship), 409)
    assert set(cycle["cycle"]) == {ship["id"], test["id"], build["id"]}
    is_problem(depend(ship, ship), 422)

    # Both directions of the edges.
    around_test = client.get(f"{API}/tasks/{test['id']}/dependencies", headers=owner.headers)
    assert around_test.status_code == 200, around_test.text
    assert [t["id"] for t in around_test.json()["depends_on"]] == [build["id"]]
    assert [t["id"] for t in around_test.json()["dependents"]] == [ship["id"]]

    tree = client.get(
        f"{API}/tasks/{ship['id']}/dependency-tree", params={"depth": 5}, headers=owner.headers
    )
    assert tree.status_code == 200, tree.text
    root = tree.json()
    assert root["id"] == ship["id"]
    assert [child["id"] for child in root["dependencies"]] == [test["id"]]
    assert [leaf["id"] for leaf in root["dependencies"][0]["dependencies"]] == [build["id"]]
    shallow = client.get(
        f"{API}/tasks/{ship['id']}/dependency-tree", params={"depth": 1}, headers=owner.headers
    ).json()
    assert shallow["dependencies"][0]["dependencies"] == []
    assert shallow["dependencies"][0]["truncated"] is True

    # Completing a blocked task names what blocks it.
    blocked = is_problem(
        client.patch(f"{API}/tasks/{ship['id']}/complete", headers=owner.headers), 409
    )
    assert blocked["blocking_ids"] == [test["id"]]
    for task in (build, test, ship):
        done = client.patch(f"{API}/tasks/{task['id']}/complete", headers=owner.headers)
        assert done.status_code == 200, done.text
    assert done.json()["blocked"] is False

    removed = client.delete(
        f"{API}/tasks/{ship['id']}/dependencies/{test['id']}", headers=owner.headers
    )
    assert removed.status_code == 204, removed.text
    assert client.get(f"{API}/tasks/{ship['id']}", headers=owner.headers).json()["depends_on"] == []

    # A creation body may carry depends_on.
    follow_up = create_task(client, owner, depends_on=[build["id"], test["id"]])
    assert sorted(follow_up["depends_on"]) == sorted([build["id"], test["id"]])


def test_assignment_and_visibility(client: httpx.Client, owner: User) -> None:
    assignee = register_and_login(client, "assignee", richer=True)
    stranger = register_and_login(client, "stranger", richer=True)

    task = create_task(client, owner, title="for the assignee", assignee_id=assignee.id)
    assert task["assignee_id"] == assignee.id
    path = f"{API}/tasks/{task['id']}"

    # A user who does not exist cannot be assigned.
    missing = client.post(
        f"{API}/tasks/", json={"title": "nobody", "assignee_id": 987_654_321}, headers=owner.headers
    )
    is_problem(missing, 422)
    reassigned = client.patch(path, json={"assignee_id": 987_654_321}, headers=owner.headers)
    is_problem(reassigned, 422)

    # The assignee sees it and may move its status, nothing else.
    assert task["id"] in listed_ids(client, assignee, {"scope": "assigned"})
    assert task["id"] not in listed_ids(client, assignee, {"scope": "owned"})
    assert task["id"] in listed_ids(client, owner, {"assignee_id": assignee.id})
    assert client.get(path, headers=assignee.headers).status_code == 200
    moved = client.patch(path, json={"status": "in_progress"}, headers=assignee.headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "in_progress"
    retitled = client.patch(path, json={"title": "hijacked"}, headers=assignee.headers)
    assert retitled.status_code == 403, retitled.text
    assert client.get(path, headers=owner.headers).json()["title"] == "for the assignee"

    # Anyone else: 404 on every route, never 403, and absent from their lists.
    assert task["id"] not in listed_ids(client, stranger, {"limit": 100})
    for method, url, body in (
        ("GET", path, None),
        ("PUT", path, {"title": "x"}),
        ("PATCH", path, {"title": "x"}),
        ("DELETE", path, None),
        ("PATCH", f"{path}/complete", None),
        ("POST", f"{path}/toggle", None),
        ("GET", f"{path}/dependencies", None),
        ("GET", f"{path}/dependency-tree", None),
        ("POST", f"{path}/dependencies", {"depends_on_id": task["id"]}),
    ):
        response = client.request(method, url, json=body, headers=stranger.headers)
        assert response.status_code == 404, f"{method} {url}: {response.status_code}"
    assert client.get(path, headers=owner.headers).status_code == 200


def test_stale_if_match_is_refused(client: httpx.Client, owner: User) -> None:
    task = create_task(client, owner, title="versioned")
    path = f"{API}/tasks/{task['id']}"
    read = client.get(path, headers=owner.headers)
    etag = read.headers["etag"]
    assert etag

    first = client.patch(path, json={"title": "first"}, headers={**owner.headers, "If-Match": etag})
    assert first.status_code == 200, first.text
    assert first.headers["etag"] != etag
    assert first.json()["version"] == task["version"] + 1

    stale = client.put(path, json={"title": "second"}, headers={**owner.headers, "If-Match": etag})
    is_problem(stale, 412)
    assert client.get(path, headers=owner.headers).json()["title"] == "first"

    fresh = client.put(
        path, json={"title": "second"}, headers={**owner.headers, "If-Match": first.headers["etag"]}
    )
    assert fresh.status_code == 200, fresh.text


def test_idempotency_key_replays_the_first_answer(client: httpx.Client, owner: User) -> None:
    key = unique("idem-")
    headers = {**owner.headers, "Idempotency-Key": key}
    body = {"title": "exactly once", "tags": ["retry"]}
    first = client.post(f"{API}/tasks/", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post(f"{API}/tasks/", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert listed_ids(client, owner, {"tags": "retry"}) == [first.json()["id"]]

    other_body = client.post(f"{API}/tasks/", json={"title": "different"}, headers=headers)
    is_problem(other_body, 422)

    # Keys are per user: someone else's identical key is a new task.
    other = register_and_login(client, "idem", richer=True)
    theirs = client.post(
        f"{API}/tasks/", json=body, headers={**other.headers, "Idempotency-Key": key}
    )
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]


def test_refresh_rotation_and_logout(client: httpx.Client) -> None:
    someone = register_and_login(client, "refresher")
    login = client.post(
        f"{API}/auth/login", json={"username": someone.username, "password": someone.password}
    )
    first = login.json()["refresh_token"]
    rotated = client.post(f"{API}/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    me = client.get(
        f"{API}/auth/me", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}
    )
    assert me.status_code == 200, me.text

    # Reusing the rotated token is refused and revokes the whole family.
    is_problem(client.post(f"{API}/auth/refresh", json={"refresh_token": first}), 401)
    is_problem(client.post(f"{API}/auth/refresh", json={"refresh_token": second}), 401)

    fresh = client.post(
        f"{API}/auth/login", json={"username": someone.username, "password": someone.password}
    ).json()["refresh_token"]
    logout = client.post(f"{API}/auth/logout", json={"refresh_token": fresh})
    assert logout.status_code == 204, logout.text
    is_problem(client.post(f"{API}/auth/refresh", json={"refresh_token": fresh}), 401)


def test_status_shortcuts_due_dates_and_activity(client: httpx.Client) -> None:
    someone = register_and_login(client, "dates")
    late = create_task(client, someone, title="late", due_date="2020-01-02T03:04:05")
    assert late["due_date"].replace("+00:00", "Z") == "2020-01-02T03:04:05Z"  # naive means UTC
    soon = create_task(client, someone, title="soon", due_date="2999-01-01T00:00:00+02:00")
    assert soon["due_date"].replace("+00:00", "Z") == "2998-12-31T22:00:00Z"

    assert listed_ids(client, someone, {"overdue": "true"}) == [late["id"]]
    assert listed_ids(client, someone, {"due_before": "2021-01-01T00:00:00Z"}) == [late["id"]]
    assert listed_ids(client, someone, {"due_after": "2021-01-01T00:00:00Z"}) == [soon["id"]]

    path = f"{API}/tasks/{soon['id']}"
    toggled = client.post(f"{path}/toggle", headers=someone.headers)
    assert toggled.status_code == 200, toggled.text
    assert toggled.json()["status"] == "done"
    reopened = client.patch(f"{path}/incomplete", headers=someone.headers)
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["status"] == "todo"
    assert reopened.json()["completed_at"] is None
    via_flag = client.patch(path, json={"is_completed": True}, headers=someone.headers)
    assert via_flag.json()["status"] == "done"
    via_alias = client.patch(path, json={"status": "pending"}, headers=someone.headers)
    assert via_alias.json()["status"] == "todo"
    assert via_alias.json()["is_completed"] is False
    client.patch(f"{path}/complete", headers=someone.headers).raise_for_status()

    # First statistics of this user: the database's figures, not a cache.
    stats = client.get(f"{API}/stats/", headers=someone.headers).json()
    assert stats["total_tasks"] == 2
    assert stats["overdue"] == 1
    assert stats["completed_tasks"] == 1
    activity = client.get(f"{API}/stats/activity", params={"days": 7}, headers=someone.headers)
    assert activity.status_code == 200, activity.text
    rows = activity.json()
    assert len(rows) == 7
    assert [row["date"] for row in rows] == sorted(row["date"] for row in rows)
    assert sum(row["created"] for row in rows) == 2
    assert sum(row["completed"] for row in rows) == 1
    is_problem(
        client.get(f"{API}/stats/activity", params={"days": 0}, headers=someone.headers), 422
    )
    is_problem(client.get(f"{API}/stats/overview", headers=someone.headers), 403)
