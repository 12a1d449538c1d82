"""Projects in a real browser: two people in two browser contexts share a board.

One creates a project and adds the other from the directory; both see the same board change
live (a task created by one, completed by the other); per-project insights follow; one removes
the other, who loses the board at once with a clear message. And the project bar fits a phone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.pages import PHONE, Pages
from tests.browser.test_web_app import card, column, create_task, sign_in
from tests.harness import register_and_login

pytestmark = pytest.mark.suite


def create_project(page: Any, name: str) -> None:
    page.locator("#new-project").click()
    page.fill("#project-name", name)
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#project-switcher option:checked")).to_have_text(name)
    expect(page.get_by_role("heading", name=f"“{name}” has no tasks yet")).to_be_visible()


def members_dialog(page: Any) -> Any:
    return page.locator("dialog.modal-members")


def add_member(page: Any, username: str, full_name: str) -> None:
    page.locator("#project-members").click()
    dialog = members_dialog(page)
    expect(dialog).to_be_visible()
    page.fill("#member-search", username)
    dialog.locator(".member-option", has_text=full_name).click()
    expect(dialog.locator(".member", has_text=full_name)).to_be_visible()


def test_two_people_share_a_board_live_and_removal_ends_it(
    pages: Pages, client: httpx.Client, screenshots: Path
) -> None:
    ana = register_and_login(client, "Ana")
    ben = register_and_login(client, "Ben")
    name = "Spring launch"
    mine = pages.open()
    sign_in(mine, ana.username, ana.password)
    theirs = pages.open()
    sign_in(theirs, ben.username, ben.password)
    for page in (mine, theirs):
        expect(page.locator("#live-dot")).to_have_class(re.compile("live-open"))

    # Ana creates the project and adds Ben from the directory; Ben is told live.
    create_project(mine, name)
    add_member(mine, ben.username, "Ben")
    mine.screenshot(path=str(screenshots / "project-members.png"))
    members_dialog(mine).get_by_role("button", name="Done").click()
    expect(mine.locator("#project-members")).to_contain_text("Members · 2")
    expect(theirs.locator(".toast", has_text=f"You were added to “{name}”")).to_be_visible()
    theirs.locator("#project-switcher").select_option(label=name)
    expect(theirs.locator("#project-role")).to_have_text("Member")
    expect(theirs).to_have_url(re.compile(r"[?&]project=\d+"))

    # A task created on Ana's board appears on Ben's, live; it belongs to the project.
    create_task(mine, "Draft the plan", priority="High", assignee=ben.username)
    expect(card(theirs, "Draft the plan")).to_be_visible()
    created = client.get(
        "/api/v1/tasks/", params={"search": "Draft the plan"}, headers=ben.headers
    ).json()["tasks"]
    assert [task["project_id"] for task in created] == [
        int(re.search(r"project=(\d+)", theirs.url).group(1))  # type: ignore[union-attr]
    ]
    # Ben completes it; Ana's board moves it to Done and both boards' insights count it.
    card(theirs, "Draft the plan").get_by_role(
        "button", name="Mark “Draft the plan” as done"
    ).click()
    expect(column(mine, "done")).to_contain_text("Draft the plan")
    for page in (mine, theirs):
        expect(page.locator("#stat-completed")).to_have_text("1 of 1 task done")
        expect(page.locator("#insights-scope")).to_contain_text(name)
    create_task(theirs, "Book the venue", priority="Urgent")
    expect(card(mine, "Book the venue")).to_be_visible()
    mine.screenshot(path=str(screenshots / "project-board.png"))

    # "My tasks" is Ben's own list plus what his projects share; the board filter is the URL.
    theirs.locator("#project-switcher").select_option(label="My tasks")
    expect(theirs.locator("#insights-scope")).to_have_count(0)
    expect(card(theirs, "Book the venue")).to_be_visible()
    theirs.go_back()
    expect(theirs.locator("#project-switcher option:checked")).to_have_text(name)

    # Ana removes Ben: his board goes at once, with a message saying why.
    mine.locator("#project-members").click()
    dialog = members_dialog(mine)
    dialog.get_by_role("button", name=re.compile(r"^Remove Ben")).click()
    mine.locator("dialog.modal-small").get_by_role("button", name="Remove").click()
    expect(dialog.locator(".member", has_text="Ben")).to_have_count(0)
    notice = theirs.locator("#project-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(f"You were removed from “{name}”")
    expect(theirs.locator("#project-switcher option:checked")).to_have_text("My tasks")
    expect(theirs.locator("#project-switcher option", has_text=name)).to_have_count(0)
    expect(card(theirs, "Draft the plan")).to_have_count(0)
    expect(card(theirs, "Book the venue")).to_have_count(0)
    theirs.screenshot(path=str(screenshots / "project-access-lost.png"))
    # The task assigned to him on that board is unassigned; the board lives on for Ana.
    dialog.get_by_role("button", name="Done").click()
    expect(card(mine, "Book the venue")).to_be_visible()


def test_the_project_bar_fits_a_phone(
    pages: Pages, client: httpx.Client, screenshots: Path
) -> None:
    person = register_and_login(client, "PhoneProj")
    made = client.post(
        "/api/v1/projects/", json={"name": "Garden club"}, headers=person.headers
    ).json()
    for title in ("Order seeds", "Fix the fence"):
        response = client.post(
            "/api/v1/tasks/",
            json={"title": title, "project_id": made["id"]},
            headers=person.headers,
        )
        assert response.status_code == 201, response.text
    page = pages.open(PHONE, path=f"/?project={made['id']}")
    sign_in(page, person.username, person.password)
    expect(card(page, "Order seeds")).to_be_visible()
    expect(page.locator("#project-switcher option:checked")).to_have_text("Garden club")
    assert int(page.evaluate("document.documentElement.scrollWidth")) <= PHONE["width"]
    for selector in ("#project-switcher", "#project-members", "#new-project"):
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["x"] + box["width"] <= PHONE["width"], selector
    # "New project" sits beside the switcher, not alone on a row of its own.
    switcher = page.locator("#project-switcher").bounding_box()
    new_project = page.locator("#new-project").bounding_box()
    assert switcher is not None
    assert new_project is not None
    assert (
        abs(
            (switcher["y"] + switcher["height"] / 2)
            - (new_project["y"] + new_project["height"] / 2)
        )
        < switcher["height"] / 2
    )
    page.screenshot(path=str(screenshots / "project-mobile.png"))
    page.locator("#project-members").click()
    box = members_dialog(page).bounding_box()
    assert box is not None
    assert box["width"] <= PHONE["width"]
    expect(page.locator("#member-search")).to_be_in_viewport()
