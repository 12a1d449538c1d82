"""The web app at `/`, in a real browser against the whole suite.

One person's path through the app (sign-up → tasks → URL filters → dependency refusal →
completion → stats → stale edit → sign-out), the session rules (silent refresh, a revoked
session), live updates in a second browser context, the demo seed, and the phone layout.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from taskflow_devstack.seed import DEMO_PASSWORD, seed

from tests.browser.pages import (
    PHONE,
    Pages,
    access_token,
    assert_no_token_stored,
    session_cookie,
    web_storage,
)
from tests.harness import register_and_login, unique, wait_until

pytestmark = pytest.mark.suite


# ---- helpers ------------------------------------------------------------------------------


def sign_up(page: Any, username: str, password: str, full_name: str) -> None:
    page.get_by_role("button", name="Create an account").click()
    page.fill("#auth-name", full_name)
    page.fill("#auth-username", username)
    page.fill("#auth-email", f"{username}@example.com")
    page.fill("#auth-password", password)
    page.get_by_role("button", name="Create account").click()


def sign_in(page: Any, username: str, password: str) -> None:
    page.fill("#auth-username", username)
    page.fill("#auth-password", password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#toolbar")).to_be_visible()


def task_dialog(page: Any) -> Any:
    return page.locator("dialog.modal-task")


def create_task(
    page: Any,
    title: str,
    *,
    priority: str | None = None,
    tags: tuple[str, ...] = (),
    depends_on: tuple[str, ...] = (),
    assignee: str | None = None,
) -> None:
    page.get_by_role("button", name="New task", exact=True).click()
    dialog = task_dialog(page)
    expect(dialog).to_be_visible()
    page.fill("#task-title", title)
    if priority:
        dialog.locator(".segment", has_text=priority).click()
    for tag in tags:
        page.fill("#task-tags", tag)
        page.press("#task-tags", "Enter")
    for dependency in depends_on:
        pick(page, "#task-deps", dependency)
    if assignee:
        pick(page, "#task-assignee", assignee)
    dialog.get_by_role("button", name="Create task").click()
    expect(dialog).to_have_count(0)
    expect(card(page, title)).to_be_visible()


def pick(page: Any, selector: str, text: str) -> None:
    """Type into a picker and choose the first match with Enter."""
    page.fill(selector, text)
    listbox = page.locator(f"{selector}-list")
    expect(listbox.get_by_role("option").first).to_contain_text(text)
    page.press(selector, "Enter")


def card(page: Any, title: str) -> Any:
    return page.locator("article.card", has=page.get_by_role("button", name=title, exact=True))


def open_card(page: Any, title: str) -> None:
    card(page, title).locator(".card-title").click()
    expect(page.locator("#task-title")).to_have_value(title)


def column(page: Any, status: str) -> Any:
    return page.locator(f"section.column[data-status='{status}']")


def signed_out(response: Any) -> bool:
    """The app's sign-out request (it ends the server's session and removes the cookie)."""
    return bool(
        response.request.method == "DELETE" and response.url.endswith("/api/v1/auth/session")
    )


def auth_of(page: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(page)}"}


# ---- the main path ------------------------------------------------------------------------


def test_a_person_plans_and_finishes_work(
    pages: Pages, client: httpx.Client, screenshots: Path
) -> None:
    page = pages.open()
    username, password = unique("web"), "a calm password"

    # Sign up (the server's refusal is shown in words); a new account lands on an empty board
    # that says what to do.
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    sign_up(page, username, "short", "Wendy Web")
    expect(page.locator(".auth-form .form-error")).to_contain_text("Password: ")
    page.fill("#auth-password", password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Welcome, Wendy Web")).to_be_visible()

    # Create tasks with priorities, tags and a dependency.
    teammate = register_and_login(client, "mate")
    create_task(page, "Write the spec", priority="High", tags=("docs",))
    create_task(
        page,
        "Ship the release",
        priority="Urgent",
        tags=("release",),
        depends_on=("Write the spec",),
        assignee=teammate.username,
    )
    create_task(page, "Plan the retro", priority="Low", tags=("team", "docs"))
    ship = card(page, "Ship the release")
    expect(ship.locator(".blocked-by")).to_contain_text("Blocked by “Write the spec”")
    expect(ship.locator(".assignee")).to_have_attribute("title", re.compile("Assigned to mate"))
    expect(column(page, "todo").locator("article.card")).to_have_count(3)

    # Filters come from the URL and go back into it.
    page.goto("/?tags=docs&sort=title&order=asc")
    todo = column(page, "todo")
    expect(todo.locator("article.card")).to_have_count(2)
    expect(todo.locator(".card-title")).to_have_text(["Plan the retro", "Write the spec"])
    expect(page.get_by_role("button", name="Remove tag filter docs")).to_be_visible()
    page.get_by_role("group", name="Priority").get_by_role("button", name="High").click()
    expect(page).to_have_url(re.compile(r"priority=high"))
    expect(todo.locator("article.card")).to_have_count(1)
    page.goto("/?view=list&q=retro")
    expect(page.locator("table.task-table tbody tr")).to_have_count(1)
    expect(page.locator(".row-title")).to_have_text("Plan the retro")
    expect(page.locator(".pager-text")).to_have_text("1\N{EN DASH}1 of 1")
    page.goto("/")
    expect(column(page, "todo").locator("article.card")).to_have_count(3)

    # A dependency that would close a loop is refused, in words.
    open_card(page, "Write the spec")
    dialog = task_dialog(page)
    expect(page.locator("#task-title")).to_have_value("Write the spec")
    page.fill("#task-deps", "Ship")
    expect(page.locator("#task-deps-list")).to_be_visible()
    page.keyboard.press("Escape")  # closes the suggestions, not the dialog
    expect(page.locator("#task-deps-list")).to_be_hidden()
    expect(dialog).to_be_visible()
    pick(page, "#task-deps", "Ship the release")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator(".form-error")).to_have_text(
        "That dependency would create a loop: “Write the spec” depends on “Ship the release”, "
        "which depends on “Write the spec”. A task can't wait on itself, even through other "
        "tasks."
    )
    page.screenshot(path=str(screenshots / "flow-cycle-refused.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    # Completing a blocked task shows the server's reason; completing its blocker works.
    stats_before = page.locator("#stat-completed")
    expect(stats_before).to_have_text("0 of 3 tasks done")
    ship.get_by_role("button", name="Mark “Ship the release” as done").click()
    expect(page.locator(".toast-error")).to_contain_text(
        "“Ship the release” can't be done yet: it depends on “Write the spec”, which isn't done."
    )
    card(page, "Write the spec").get_by_role("button", name="Mark “Write the spec” as done").click()
    expect(column(page, "done").locator("article.card")).to_have_count(1)
    expect(column(page, "done")).to_contain_text("Write the spec")
    # The stats panel follows at once, and the blocked task is free.
    expect(page.locator("#stat-completed")).to_have_text("1 of 3 tasks done")
    expect(page.locator(".ring")).to_have_attribute("aria-label", "33% done")
    expect(page.locator(".chart-legend")).to_contain_text("1 completed")
    expect(card(page, "Ship the release").locator(".blocked-by")).to_have_count(0)

    # A stale edit: someone else changes the task while the dialog is open.
    open_card(page, "Plan the retro")
    expect(page.locator("#task-title")).to_have_value("Plan the retro")
    retro_id = int(card(page, "Plan the retro").get_attribute("data-task-id"))
    changed = client.patch(
        f"/api/v1/tasks/{retro_id}",
        json={"title": "Plan the retro (moved to Friday)"},
        headers={"Authorization": f"Bearer {access_token(page)}"},
    )
    assert changed.status_code == 200, changed.text
    page.fill("#task-description", "Bring sticky notes")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator(".form-notice").first).to_contain_text(
        "Someone else changed this task while you were editing"
    )
    expect(page.locator("#task-title")).to_have_value("Plan the retro (moved to Friday)")
    expect(page.locator("#task-description")).to_have_value("")
    # Saving again now applies on top of the latest version.
    page.fill("#task-description", "Bring sticky notes")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_have_count(0)
    saved = client.get(
        f"/api/v1/tasks/{retro_id}", headers={"Authorization": f"Bearer {access_token(page)}"}
    ).json()
    assert saved["title"] == "Plan the retro (moved to Friday)"
    assert saved["description"] == "Bring sticky notes"

    # Drag a card to another column to change its status.
    retro = card(page, "Plan the retro (moved to Friday)")
    retro.drag_to(column(page, "in_progress"))
    expect(column(page, "in_progress")).to_contain_text("Plan the retro (moved to Friday)")
    wait_until(
        lambda: (
            client.get(f"/api/v1/tasks/{retro_id}", headers=auth_of(page)).json()["status"]
            == "in_progress"
        ),
        timeout=10,
        what="the dropped card's status to be saved",
    )

    # Delete with confirmation; Undo while the toast shows means nothing was sent.
    open_card(page, "Ship the release")
    dialog.get_by_role("button", name="Delete").click()
    page.locator("dialog.modal-small").get_by_role("button", name="Delete task").click()
    expect(card(page, "Ship the release")).to_have_count(0)
    page.locator(".toast").get_by_role("button", name="Undo").click()
    expect(card(page, "Ship the release")).to_be_visible()
    assert not [url for method, url in pages.requests if method == "DELETE"]
    # Deleted again, the request goes when the toast does (dismissed here, not waited for).
    ship_id = int(card(page, "Ship the release").get_attribute("data-task-id"))
    open_card(page, "Ship the release")
    dialog.get_by_role("button", name="Delete").click()
    page.locator("dialog.modal-small").get_by_role("button", name="Delete task").click()
    page.locator(".toast", has_text="Deleted").get_by_role("button", name="Dismiss").click()
    expect(card(page, "Ship the release")).to_have_count(0)
    auth = {"Authorization": f"Bearer {access_token(page)}"}
    wait_until(
        lambda: client.get(f"/api/v1/tasks/{ship_id}", headers=auth).status_code == 404,
        timeout=10,
        what="the delayed DELETE to reach the server",
    )
    expect(column(page, "todo").locator("article.card")).to_have_count(0)
    expect(column(page, "todo").locator(".column-empty")).to_have_text("Nothing here yet")

    # Every request of the session went to the gateway (REST, assets, the socket).
    outside = [url for _, url in pages.requests if not url.startswith(pages.base_url)]
    assert not outside, outside

    # Sign out: back to sign-in with a word, the session cookie gone, a reload stays signed out.
    assert_no_token_stored(page)
    with page.expect_response(signed_out) as ended:
        page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status").filter(has_text="You have signed out.")).to_be_visible()
    assert ended.value.status == 204
    assert session_cookie(page) is None
    assert_no_token_stored(page)
    page.reload()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()


def test_the_session_survives_a_reload_without_storing_a_token_and_a_revoked_one_ends(
    pages: Pages, client: httpx.Client
) -> None:
    person = register_and_login(client, "sess")
    page = pages.open()
    sign_in(page, person.username, person.password)

    # The refresh token is an HttpOnly, SameSite=Strict cookie for the auth routes only; the
    # access token lives in the page's memory: web storage holds no token at all.
    first = session_cookie(page)
    assert first is not None
    assert (first["httpOnly"], first["sameSite"], first["path"]) == (True, "Strict", "/api/v1/auth")
    assert page.evaluate("document.cookie") == ""
    assert_no_token_stored(page)
    assert web_storage(page) == {}

    # A reload keeps you signed in: the fresh page gets an access token with the cookie (which
    # rotates).
    with page.expect_response("**/api/v1/auth/session/refresh") as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    expect(page.locator("#toolbar")).to_be_visible()
    second = session_cookie(page)
    assert second is not None
    assert second["value"] != first["value"]
    access = refreshed.value.json()["access_token"]
    assert "refresh_token" not in refreshed.value.json()
    assert_no_token_stored(page)

    # The server ends the session (logged out elsewhere): the live socket is closed for the
    # revoked token, the refresh is refused, and the app says so on the sign-in screen without
    # anyone touching it.
    logout = client.post("/api/v1/auth/logout", json={"refresh_token": second["value"]})
    assert logout.status_code == 204, logout.text
    revoked = {"Authorization": f"Bearer {access}"}
    wait_until(
        lambda: client.get("/api/v1/users/me", headers=revoked).status_code == 401,
        timeout=5,
        what="the logged-out session's access token to be refused",
    )
    expect(page.get_by_role("status").filter(has_text="Your session has ended")).to_be_visible()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    assert session_cookie(page) is None  # the refused refresh removed it
    page.reload()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()


def test_a_second_tab_shares_the_session_and_its_sign_out(
    pages: Pages, client: httpx.Client
) -> None:
    person = register_and_login(client, "tabs")
    page = pages.open()
    sign_in(page, person.username, person.password)

    other = page.context.new_page()
    other.goto("/")
    expect(other.locator("#toolbar")).to_be_visible()  # signed in from the shared cookie
    page.reload()  # both tabs refreshed (one at a time): neither counts as a replayed cookie
    expect(page.locator("#toolbar")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(other.get_by_role("heading", name="Welcome back")).to_be_visible()


def test_profile_name_password_and_account_deletion(pages: Pages, client: httpx.Client) -> None:
    person = register_and_login(client, "prof")
    page = pages.open()
    sign_in(page, person.username, person.password)

    page.locator("#account-button").click()
    profile = page.locator("dialog.modal-profile")
    page.fill("#profile-name", "Pat Profile")
    profile.get_by_role("button", name="Save profile").click()
    expect(page.locator(".toast")).to_contain_text("Profile saved")
    expect(page.locator("#account-avatar")).to_have_text("PP")

    # A wrong current password is refused with the server's words; the right one works and
    # the app signs itself in again (a password change ends every session).
    page.fill("#profile-current-password", "not my password")
    page.fill("#profile-new-password", "a brand new password")
    profile.get_by_role("button", name="Change password").click()
    expect(profile.locator(".form-error").nth(1)).not_to_be_empty()
    before = session_cookie(page)
    page.fill("#profile-current-password", person.password)
    profile.get_by_role("button", name="Change password").click()
    expect(page.locator(".toast-success").last).to_contain_text("Password changed")
    after = session_cookie(page)
    assert before is not None
    assert after is not None
    assert after["value"] != before["value"]
    old = client.post(
        "/api/v1/auth/login", json={"username": person.username, "password": person.password}
    )
    assert old.status_code == 401
    profile.get_by_role("button", name="Close").click()
    expect(page.locator("#toolbar")).to_be_visible()
    page.reload()
    expect(page.locator("#account-avatar")).to_have_text("PP")

    # A new email needs the current password: the dialog asks for it.
    page.locator("#account-button").click()
    page.fill("#profile-email", f"new-{person.username}@example.com")
    expect(page.locator("#profile-password")).to_be_visible()
    profile.get_by_role("button", name="Save profile").click()
    expect(profile.locator(".form-error").first).to_contain_text("current password")
    page.fill("#profile-password", "a brand new password")
    profile.get_by_role("button", name="Save profile").click()
    expect(page.locator(".toast")).to_contain_text("Profile saved")
    me = client.get("/api/v1/users/me", headers=auth_of(page)).json()
    assert me["email"] == f"new-{person.username}@example.com"
    profile.get_by_role("button", name="Close").click()

    # Deleting the account asks for the username and the password first.
    page.locator("#account-button").click()
    page.get_by_role("button", name="Delete account…").click()
    confirm = page.locator("dialog.modal-small")
    delete = confirm.get_by_role("button", name="Delete my account")
    expect(delete).to_be_disabled()
    page.fill("#confirm-text", person.username)
    expect(delete).to_be_disabled()
    page.fill("#confirm-password", "a brand new password")
    delete.click()
    expect(page.get_by_role("status").filter(has_text="account has been deleted")).to_be_visible()
    gone = client.post(
        "/api/v1/auth/login",
        json={"username": person.username, "password": "a brand new password"},
    )
    assert gone.status_code == 401


LIVE_LANDED = importlib.util.find_spec("api_gateway.live") is not None


@pytest.mark.skipif(not LIVE_LANDED, reason="not landed yet: the gateway's WebSocket (live.py)")
def test_a_second_browser_sees_changes_live(pages: Pages, client: httpx.Client) -> None:
    owner = register_and_login(client, "liveown")
    assignee = register_and_login(client, "liveasg")
    mine = pages.open()
    sign_in(mine, owner.username, owner.password)
    theirs = pages.open()
    sign_in(theirs, assignee.username, assignee.password)
    expect(theirs.locator("#live-dot")).to_have_class(re.compile("live-open"))
    expect(mine.locator("#live-dot")).to_have_class(re.compile("live-open"))

    create_task(mine, "Review the budget", priority="High", assignee=assignee.username)
    # The assignee's board shows it without a reload, and its figures follow.
    expect(card(theirs, "Review the budget")).to_be_visible()
    expect(theirs.locator("#stat-total .figure-value")).to_have_text("1")
    # The assignee completes it; the owner's board moves it to Done live.
    card(theirs, "Review the budget").get_by_role(
        "button", name="Mark “Review the budget” as done"
    ).click()
    expect(column(mine, "done")).to_contain_text("Review the budget")
    expect(mine.locator("#stat-completed")).to_have_text("1 of 1 task done")


@pytest.mark.skipif(not LIVE_LANDED, reason="not landed yet: the gateway's WebSocket (live.py)")
def test_the_banner_follows_the_connection_and_the_board_resyncs(
    pages: Pages, client: httpx.Client, suite: Any
) -> None:
    """A gateway of its own, killed and started again under the page."""
    gateway = suite.start_gateway("api-gateway-banner")
    person = register_and_login(client, "banner")
    page = pages.open(base_url=gateway.url)
    sign_in(page, person.username, person.password)
    expect(page.locator("#live-dot")).to_have_class(re.compile("live-open"))
    banner = page.locator("#live-banner")
    expect(banner).to_be_hidden()

    gateway.kill()  # the connection drops as on a network failure (and faster than a stop)
    expect(banner).to_contain_text("connection lost")
    # A change made while this page cannot hear about it...
    made = client.post(
        "/api/v1/tasks/", json={"title": "Made while you were away"}, headers=person.headers
    )
    assert made.status_code == 201, made.text
    gateway.start()
    gateway.wait_ready()
    # ...is on the board once the socket is back.
    expect(banner).to_contain_text("Back online", timeout=30_000)  # backoff: 1, 2, 4, 8 s
    expect(card(page, "Made while you were away")).to_be_visible()
    expect(banner).to_be_hidden()


# ---- the demo seed and the screens ---------------------------------------------------------


def test_the_demo_seed_fills_a_living_board(pages: Pages, gateway: Any, screenshots: Path) -> None:
    created = seed(gateway.url, out=None)
    assert seed(gateway.url, out=None) == 0, "a second run changes nothing"
    page = pages.open()
    sign_in(page, "demo", DEMO_PASSWORD)
    if created:
        expect(page.locator("#stat-total .figure-value")).to_have_text("17")
    expect(column(page, "in_progress").locator("article.card").first).to_be_visible()
    expect(page.locator(".blocked-by").first).to_contain_text("Blocked by")
    expect(page.locator("#stat-overdue .figure-value")).not_to_have_text("0")
    page.screenshot(path=str(screenshots / "board.png"))
    page.locator(".insights").screenshot(path=str(screenshots / "stats.png"))

    open_card(page, "Build the landing page")
    expect(page.locator("#task-title")).to_have_value("Build the landing page")
    expect(task_dialog(page).locator(".dep-title")).to_have_text(["Write the launch brief"])
    page.screenshot(path=str(screenshots / "task-dialog.png"))
    page.keyboard.press("Escape")

    page.goto("/?view=list&sort=due_date")
    expect(page.locator("table.task-table tbody tr").first).to_be_visible()
    page.screenshot(path=str(screenshots / "list.png"))

    phone = pages.open(PHONE)
    sign_in(phone, "demo", DEMO_PASSWORD)
    expect(column(phone, "todo").locator("article.card").first).to_be_visible()
    phone.screenshot(path=str(screenshots / "mobile.png"))


def test_the_app_fits_a_phone(pages: Pages, client: httpx.Client, screenshots: Path) -> None:
    person = register_and_login(client, "phone")
    for title, priority in [("Call the plumber", "urgent"), ("Buy stamps", "low")]:
        made = client.post(
            "/api/v1/tasks/",
            json={"title": title, "priority": priority, "tags": ["home"]},
            headers=person.headers,
        )
        assert made.status_code == 201, made.text
    page = pages.open(PHONE)
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    page.screenshot(path=str(screenshots / "mobile-sign-in.png"))
    sign_in(page, person.username, person.password)
    expect(card(page, "Call the plumber")).to_be_visible()

    def page_width() -> int:
        return int(page.evaluate("document.documentElement.scrollWidth"))

    # Nothing sticks out sideways: the board's columns scroll inside their own strip.
    assert page_width() <= PHONE["width"]
    todo = column(page, "todo").bounding_box()
    assert todo is not None
    assert todo["width"] < PHONE["width"]
    new_task = page.get_by_role("button", name="New task", exact=True)
    expect(new_task).to_be_in_viewport()

    # The dialog fills the width, its buttons stay reachable, Escape closes it.
    new_task.click()
    dialog = task_dialog(page)
    box = dialog.bounding_box()
    assert box is not None
    assert box["width"] <= PHONE["width"]
    expect(dialog.get_by_role("button", name="Create task")).to_be_in_viewport()
    page.screenshot(path=str(screenshots / "mobile-dialog.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    # The list view turns rows into stacked cards that also fit.
    page.get_by_role("button", name="List", exact=True).click()
    expect(page.locator(".row-title")).to_have_count(2)
    assert page_width() <= PHONE["width"]


def test_the_list_pager_walks_pages_by_cursor(pages: Pages, client: httpx.Client) -> None:
    person = register_and_login(client, "pager")
    for index in range(45):
        created = client.post(
            "/api/v1/tasks/", json={"title": f"Paged {index:02d}"}, headers=person.headers
        )
        assert created.status_code == 201, created.text
    page = pages.open(path="/?view=list")
    sign_in(page, person.username, person.password)
    rows = page.locator("table.task-table tbody tr")
    expect(page.locator(".pager-text")).to_have_text("1\N{EN DASH}20 of 45")
    expect(rows.first.locator(".row-title")).to_have_text("Paged 44")

    # Next asks for the page after the last row shown (its cursor), not for an offset.
    with page.expect_request(re.compile(r"/api/v1/tasks/\?.*cursor=")) as asked:
        page.get_by_role("button", name="Next page").click()
    assert "skip=" not in asked.value.url
    expect(page.locator(".pager-text")).to_have_text("21\N{EN DASH}40 of 45")
    expect(rows.first.locator(".row-title")).to_have_text("Paged 24")
    page.get_by_role("button", name="Next page").click()
    expect(page.locator(".pager-text")).to_have_text("41\N{EN DASH}45 of 45")
    expect(rows).to_have_count(5)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()

    # Previous goes back by the cursor it came through; a page opened from a link still works.
    page.get_by_role("button", name="Previous page").click()
    expect(rows.first.locator(".row-title")).to_have_text("Paged 24")
    page.goto("/?view=list&page=3")
    expect(page.locator(".pager-text")).to_have_text("41\N{EN DASH}45 of 45")
