// The create / edit dialog of one task: fields, assignee and dependency pickers, If-Match.

import { ApiError, query } from "./api.js";
import {
  debounce,
  dueLabel,
  fill,
  fromLocalInput,
  h,
  hueClass,
  icon,
  initials,
  modal,
  relativeTime,
  toLocalInput,
  toast,
} from "./ui.js";

export const STATUSES = [
  { id: "todo", label: "To do" },
  { id: "in_progress", label: "In progress" },
  { id: "done", label: "Done" },
];
export const PRIORITIES = [
  { id: "low", label: "Low" },
  { id: "medium", label: "Medium" },
  { id: "high", label: "High" },
  { id: "urgent", label: "Urgent" },
];

export function statusLabel(id) {
  return (STATUSES.find((s) => s.id === id) || { label: id }).label;
}

export function priorityLabel(id) {
  return (PRIORITIES.find((p) => p.id === id) || { label: id }).label;
}

/** "“A” depends on “B”, which depends on “A”" from the server's cycle [a, b, a]. */
export function describeCycle(cycle, titleOf) {
  if (!Array.isArray(cycle) || cycle.length < 2) return "";
  const names = cycle.map((id) => `“${titleOf(id)}”`);
  let text = `${names[0]} depends on ${names[1]}`;
  for (const name of names.slice(2)) text += `, which depends on ${name}`;
  return text;
}

/** A person-readable sentence for a refused change, using task titles where we know them. */
export function explainProblem(error, titleOf, subject) {
  if (!(error instanceof ApiError)) return String(error.message || error);
  const body = error.body || {};
  if (error.status === 409 && Array.isArray(body.cycle)) {
    return (
      `That dependency would create a loop: ${describeCycle(body.cycle, titleOf)}. ` +
      "A task can't wait on itself, even through other tasks."
    );
  }
  if (error.status === 409 && Array.isArray(body.blocking_ids)) {
    const names = body.blocking_ids.map((id) => `“${titleOf(id)}”`);
    const list =
      names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}` : names[0];
    const verb = names.length > 1 ? "aren't" : "isn't";
    return `${subject ? `“${subject}”` : "This task"} can't be done yet: it depends on ${list}, which ${verb} done.`;
  }
  return error.message;
}

function avatar(person, size = "sm") {
  const name = person ? person.full_name || person.username : "?";
  return h(
    "span",
    { class: ["avatar", `avatar-${size}`, hueClass(person && person.id)], "aria-hidden": "true" },
    initials(name),
  );
}

/**
 * Open the dialog. `ctx`: {session, people, me, titleOf(id), remember(task), onSaved(task),
 * onDelete(task)}. `options`: {taskId} to edit, or {preset: {status}} to create.
 */
export async function openTaskDialog(ctx, { taskId, preset = {} } = {}) {
  const editing = Boolean(taskId);
  let task = null;
  let etag = null;
  let depTasks = [];
  let busy = false;
  const idempotencyKey = crypto.randomUUID();

  const errorBox = h("div", { class: "form-error", role: "alert", hidden: true });
  const noticeBox = h("div", { class: "form-notice", role: "status", hidden: true });
  const body = h("div", { class: "modal-body task-form-body" }, h("div", { class: "loading-row" }, h("span", { class: "spinner" }), "Loading task…"));
  const dialog = modal({
    title: editing ? "Edit task" : "New task",
    className: "modal-task",
    content: body,
  });

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
    if (message) errorBox.scrollIntoView({ block: "nearest" });
  }

  function showNotice(message) {
    noticeBox.textContent = message || "";
    noticeBox.hidden = !message;
  }

  async function load() {
    const { data, response } = await ctx.session.request("GET", `/tasks/${taskId}`);
    task = data;
    etag = response.headers.get("ETag") || `W/"${task.version}"`;
    ctx.remember(task);
    const deps = await ctx.session.get(`/tasks/${taskId}/dependencies`).catch(() => null);
    depTasks = deps ? deps.depends_on : task.depends_on.map((id) => ({ id, title: ctx.titleOf(id), status: "todo" }));
    for (const dep of depTasks) ctx.remember(dep);
    const ids = [task.assignee_id, task.owner_id].filter(Boolean);
    await ctx.people.ensure(ids);
  }

  if (editing) {
    try {
      await load();
    } catch (error) {
      fill(body, 
        h("p", { class: "form-error" }, explainProblem(error, ctx.titleOf)),
        h("div", { class: "modal-actions" }, h("button", { class: "button", type: "button", onclick: () => dialog.close() }, "Close")),
      );
      return;
    }
  }

  // ---- form state --------------------------------------------------------------------------
  // A project's task belongs to the board: every member edits every field.
  const projectId = editing ? task.project_id || null : ctx.projectId || null;
  const owner = !editing || task.owner_id === ctx.me.id || projectId !== null;
  let tags = editing ? [...task.tags] : [];
  let assignee = editing && task.assignee_id ? ctx.people.byId.get(task.assignee_id) || { id: task.assignee_id, username: ctx.people.name(task.assignee_id) } : null;
  let dependencies = depTasks.map((dep) => ({ id: dep.id, title: dep.title, status: dep.status }));

  const title = h("input", { class: "input", id: "task-title", name: "title", required: true, maxlength: 200, autocomplete: "off", disabled: !owner, placeholder: "What needs doing?" });
  const description = h("textarea", { class: "input", id: "task-description", name: "description", rows: 3, maxlength: 10000, disabled: !owner, placeholder: "Add details, links or acceptance notes" });
  const status = h("select", { class: "input", id: "task-status", name: "status" }, STATUSES.map((s) => h("option", { value: s.id }, s.label)));
  const priorityGroup = h(
    "div",
    { class: "segmented", role: "radiogroup", "aria-labelledby": "task-priority-label" },
    PRIORITIES.map((p) =>
      h(
        "label",
        { class: ["segment", `segment-${p.id}`] },
        h("input", { type: "radio", name: "priority", value: p.id, disabled: !owner }),
        h("span", {}, p.label),
      ),
    ),
  );
  const due = h("input", { class: "input", id: "task-due", name: "due", type: "datetime-local", disabled: !owner });
  const clearDue = h("button", { class: "button button-ghost button-small", type: "button", disabled: !owner, onclick: () => { due.value = ""; due.focus(); } }, "Clear");

  // Tags: type and press Enter or comma; Backspace on an empty field removes the last one.
  const tagList = h("span", { class: "chips" });
  const tagInput = h("input", { class: "chip-input", id: "task-tags", autocomplete: "off", placeholder: "Add a tag…", maxlength: 50, disabled: !owner });
  function addTag(raw) {
    const value = raw.trim().toLowerCase();
    if (value && !tags.includes(value)) tags.push(value);
    tagInput.value = "";
    renderTags();
  }
  function renderTags() {
    fill(tagList, 
      ...tags.map((tag) =>
        h(
          "span",
          { class: "chip" },
          tag,
          owner
            ? h("button", { type: "button", class: "chip-remove", "aria-label": `Remove tag ${tag}`, onclick: () => { tags = tags.filter((t) => t !== tag); renderTags(); tagInput.focus(); } }, icon("x", { size: 12 }))
            : null,
        ),
      ),
    );
  }
  tagInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === ",") {
      if (tagInput.value.trim()) {
        event.preventDefault();
        addTag(tagInput.value);
      } else if (event.key === ",") event.preventDefault();
    } else if (event.key === "Backspace" && !tagInput.value && tags.length) {
      tags.pop();
      renderTags();
    }
  });
  tagInput.addEventListener("blur", () => {
    if (tagInput.value.trim()) addTag(tagInput.value);
  });

  // Assignee: a combobox over the user directory.
  const assigneePicker = picker({
    id: "task-assignee",
    label: "Assignee",
    placeholder: "Search people by name or email…",
    disabled: !owner,
    search: async (q) => {
      const people = (await ctx.people.search(q)).filter((u) => u.is_active !== false);
      // A project's task goes to one of the project's members.
      if (projectId === null || !ctx.memberIds) return people;
      const members = await ctx.memberIds(projectId);
      return people.filter((u) => members.has(u.id));
    },
    option: (user) => [avatar(user), h("span", { class: "option-name" }, user.full_name || user.username), h("span", { class: "option-sub" }, `@${user.username}`)],
    choose: (user) => {
      assignee = user;
      renderAssignee();
    },
  });
  const assigneeValue = h("div", { class: "picked" });
  function renderAssignee() {
    fill(assigneeValue, 
      assignee
        ? h(
            "span",
            { class: "picked-person" },
            avatar(assignee),
            h("span", {}, assignee.full_name || assignee.username),
            assignee.id === ctx.me.id ? h("span", { class: "muted" }, "(you)") : null,
            owner ? h("button", { type: "button", class: "chip-remove", "aria-label": "Unassign", onclick: () => { assignee = null; renderAssignee(); } }, icon("x", { size: 12 })) : null,
          )
        : h("span", { class: "muted" }, "Unassigned"),
      owner && (!assignee || assignee.id !== ctx.me.id)
        ? h("button", { type: "button", class: "button button-ghost button-small", onclick: () => { assignee = ctx.me; renderAssignee(); } }, "Assign to me")
        : null,
    );
  }

  // Dependencies: your own tasks (not this one, not those already chosen).
  const depPicker = picker({
    id: "task-deps",
    label: "Depends on",
    placeholder: projectId === null ? "Search your tasks…" : "Search this project's tasks…",
    disabled: !owner,
    search: async (q) => {
      // Dependencies link tasks of one project, or personal tasks.
      const params = projectId === null ? { scope: "owned" } : { project_id: projectId };
      const found = await ctx.session.get(`/tasks/${query({ ...params, search: q, limit: 8, sort_by: "updated_at", sort_order: "desc" })}`);
      for (const item of found.tasks) ctx.remember(item);
      return found.tasks.filter((t) => t.id !== taskId && (t.project_id || null) === projectId && !dependencies.some((d) => d.id === t.id));
    },
    option: (item) => [h("span", { class: ["status-dot", `status-${item.status}`], "aria-hidden": "true" }), h("span", { class: "option-name" }, item.title), h("span", { class: "option-sub" }, statusLabel(item.status))],
    choose: (item) => {
      dependencies.push({ id: item.id, title: item.title, status: item.status });
      renderDependencies();
    },
  });
  const depList = h("ul", { class: "dep-list" });
  function renderDependencies() {
    fill(depList, 
      ...dependencies.map((dep) =>
        h(
          "li",
          { class: ["dep", dep.status === "done" ? "dep-done" : "dep-open"] },
          h("span", { class: ["status-dot", `status-${dep.status}`], "aria-hidden": "true" }),
          h("span", { class: "dep-title" }, dep.title || ctx.titleOf(dep.id)),
          h("span", { class: "dep-status" }, statusLabel(dep.status)),
          owner ? h("button", { type: "button", class: "chip-remove", "aria-label": `Remove dependency ${dep.title}`, onclick: () => { dependencies = dependencies.filter((d) => d.id !== dep.id); renderDependencies(); } }, icon("x", { size: 12 })) : null,
        ),
      ),
    );
    const open = dependencies.filter((d) => d.status !== "done");
    blockedNote.hidden = !open.length;
    blockedNote.textContent = open.length
      ? `Blocked: waiting on ${open.map((d) => `“${d.title || ctx.titleOf(d.id)}”`).join(", ")}.`
      : "";
  }
  const blockedNote = h("p", { class: "blocked-note", hidden: true });

  function fillForm(from) {
    title.value = from ? from.title : "";
    description.value = from && from.description ? from.description : "";
    status.value = from ? from.status : preset.status || "todo";
    const priority = from ? from.priority : preset.priority || "medium";
    for (const radio of priorityGroup.querySelectorAll("input")) radio.checked = radio.value === priority;
    due.value = from ? toLocalInput(from.due_date) : "";
    tags = from ? [...from.tags] : [];
    renderTags();
    renderAssignee();
    renderDependencies();
  }

  const meta = editing
    ? h(
        "p",
        { class: "task-meta" },
        `#${task.id} · created ${relativeTime(task.created_at)} · updated ${relativeTime(task.updated_at)}`,
        task.owner_id !== ctx.me.id ? ` · owned by ${ctx.people.name(task.owner_id)}` : "",
      )
    : null;

  const deleteButton =
    editing && owner
      ? h("button", { class: "button button-danger-ghost", type: "button", onclick: () => { dialog.close("delete"); ctx.onDelete(task); } }, icon("trash", { size: 16 }), "Delete")
      : null;
  const saveButton = h("button", { class: "button button-primary", type: "submit" }, editing ? "Save changes" : "Create task");

  const form = h(
    "form",
    { class: "task-form", novalidate: true, onsubmit: (event) => { event.preventDefault(); save(); } },
    noticeBox,
    errorBox,
    !owner ? h("p", { class: "form-notice" }, `This task belongs to ${ctx.people.name(task.owner_id)}. As its assignee you can change its status only.`) : null,
    projectId !== null && ctx.projectName ? h("p", { class: "form-notice project-notice", id: "task-project" }, icon("board", { size: 14 }), ` In ${ctx.projectName(projectId)} — every member sees and edits it.`) : null,
    field("task-title", "Title", title),
    field("task-description", "Description", description),
    h(
      "div",
      { class: "field-row" },
      field("task-status", "Status", status),
      h("div", { class: "field" }, h("span", { class: "label", id: "task-priority-label" }, "Priority"), priorityGroup),
    ),
    h("div", { class: "field-row" }, h("div", { class: "field" }, h("label", { for: "task-due" }, "Due"), h("div", { class: "inline" }, due, clearDue)), h("div", { class: "field" }, h("span", { class: "label" }, "Assignee"), assigneeValue, owner ? assigneePicker.element : null)),
    h("div", { class: "field" }, h("label", { for: "task-tags" }, "Tags"), h("div", { class: ["chip-field", !owner && "disabled"], onclick: () => tagInput.focus() }, tagList, tagInput)),
    h("div", { class: "field" }, h("span", { class: "label" }, "Depends on"), depList, blockedNote, owner ? depPicker.element : null),
    meta,
    h("div", { class: "modal-actions" }, deleteButton, h("span", { class: "spacer" }), h("button", { class: "button", type: "button", onclick: () => dialog.close("cancel") }, "Cancel"), saveButton),
  );
  fillForm(task);
  body.replaceWith(h("div", { class: "modal-body" }, form));
  (owner ? title : status).focus();

  function currentPriority() {
    const checked = priorityGroup.querySelector("input:checked");
    return checked ? checked.value : "medium";
  }

  function setBusy(value) {
    busy = value;
    saveButton.disabled = value;
    saveButton.classList.toggle("is-busy", value);
  }

  async function save() {
    if (busy) return;
    showError("");
    if (tagInput.value.trim()) addTag(tagInput.value);
    if (owner && !title.value.trim()) {
      showError("Give the task a title.");
      title.focus();
      return;
    }
    setBusy(true);
    try {
      if (editing) await saveEdit();
      else await saveNew();
    } finally {
      setBusy(false);
    }
  }

  async function saveNew() {
    const payload = {
      title: title.value.trim(),
      description: description.value.trim() || null,
      status: status.value,
      priority: currentPriority(),
      due_date: fromLocalInput(due.value),
      tags,
      assignee_id: assignee ? assignee.id : null,
      depends_on: dependencies.map((d) => d.id),
    };
    if (projectId !== null) payload.project_id = projectId;
    try {
      const { data } = await ctx.session.request("POST", "/tasks/", { body: payload, headers: { "Idempotency-Key": idempotencyKey } });
      ctx.remember(data);
      dialog.close("saved");
      toast(`Created “${data.title}”`, { kind: "success" });
      ctx.onSaved(data);
    } catch (error) {
      showError(explainProblem(error, ctx.titleOf, payload.title));
    }
  }

  async function saveEdit() {
    const changes = {};
    if (owner) {
      const next = {
        title: title.value.trim(),
        description: description.value.trim() || null,
        priority: currentPriority(),
        due_date: fromLocalInput(due.value),
        tags,
        assignee_id: assignee ? assignee.id : null,
      };
      for (const [key, value] of Object.entries(next)) {
        const before = task[key];
        const same = key === "tags" ? JSON.stringify(before) === JSON.stringify(value) : key === "due_date" ? (before ? new Date(before).getTime() : null) === (value ? new Date(value).getTime() : null) : before === value;
        if (!same) changes[key] = value;
      }
    }
    const statusChange = status.value !== task.status ? status.value : null;
    const wanted = new Set(dependencies.map((d) => d.id));
    const had = new Set(task.depends_on);
    const added = [...wanted].filter((id) => !had.has(id));
    const removed = [...had].filter((id) => !wanted.has(id));
    let saved = task;
    let savedSomething = false;
    // Fields first, under If-Match (a stale edit is refused before anything changes); then the
    // dependency edges; the status last, so completing sees the dependencies just removed.
    try {
      if (Object.keys(changes).length) {
        const { data } = await ctx.session.request("PATCH", `/tasks/${task.id}`, {
          body: changes,
          headers: { "If-Match": etag },
        });
        saved = data;
        savedSomething = true;
      }
      for (const id of removed) {
        await ctx.session.request("DELETE", `/tasks/${task.id}/dependencies/${id}`);
        savedSomething = true;
      }
      for (const id of added) {
        const { data } = await ctx.session.request("POST", `/tasks/${task.id}/dependencies`, {
          body: { depends_on_id: id },
        });
        saved = data;
        savedSomething = true;
      }
      if (statusChange) {
        // Without an earlier write, the status change itself carries the If-Match.
        const headers = savedSomething ? {} : { "If-Match": etag };
        const { data } = await ctx.session.request("PATCH", `/tasks/${task.id}`, {
          body: { status: statusChange },
          headers,
        });
        saved = data;
        savedSomething = true;
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        await reloadAfterConflict();
        return;
      }
      let message = explainProblem(error, ctx.titleOf, task.title);
      if (savedSomething) {
        message += " Your other changes were saved.";
        await refreshAfterPartialSave();
      }
      showError(message);
      return;
    }
    ctx.remember(saved);
    dialog.close("saved");
    toast(savedSomething ? `Saved “${saved.title}”` : "No changes to save", { kind: savedSomething ? "success" : "info" });
    if (savedSomething) ctx.onSaved(saved);
  }

  async function reloadAfterConflict() {
    try {
      await load();
      fillForm(task);
      showNotice("Someone else changed this task while you were editing, so your changes were not saved. The latest version is shown below — review it and save again.");
      ctx.onSaved(task);
    } catch (error) {
      showError(explainProblem(error, ctx.titleOf));
    }
  }

  async function refreshAfterPartialSave() {
    const kept = { status: status.value, dependencies };
    try {
      await load();
      fillForm(task);
      status.value = kept.status;
      ctx.onSaved(task);
    } catch {
      // the error shown already says what happened
    }
  }
}

function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

/**
 * A small accessible combobox: an input, a listbox of results from `search(q)`, arrow keys to
 * move, Enter to choose, Escape to close the list (a second Escape closes the dialog).
 */
function picker({ id, label, placeholder, search, option, choose, disabled }) {
  const listId = `${id}-list`;
  const input = h("input", {
    class: "input",
    id,
    type: "search",
    role: "combobox",
    "aria-label": `${label}: search`,
    "aria-expanded": "false",
    "aria-controls": listId,
    "aria-autocomplete": "list",
    autocomplete: "off",
    placeholder,
    disabled,
  });
  const list = h("ul", { class: "listbox", id: listId, role: "listbox", hidden: true, "aria-label": label });
  let results = [];
  let active = -1;
  let sequence = 0;

  function close() {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function render() {
    fill(list, 
      ...(results.length
        ? results.map((item, index) =>
            h(
              "li",
              {
                id: `${listId}-${index}`,
                role: "option",
                class: ["option", index === active && "active"],
                "aria-selected": index === active ? "true" : "false",
                onmousedown: (event) => {
                  event.preventDefault();
                  pick(index);
                },
              },
              option(item),
            ),
          )
        : [h("li", { class: "option-empty", role: "presentation" }, "No matches")]),
    );
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    if (active >= 0) input.setAttribute("aria-activedescendant", `${listId}-${active}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function pick(index) {
    const item = results[index];
    if (!item) return;
    choose(item);
    input.value = "";
    close();
    input.focus();
  }

  const run = debounce(async () => {
    const mine = ++sequence;
    try {
      const found = await search(input.value.trim());
      if (mine !== sequence) return;
      results = found;
      active = results.length ? 0 : -1;
      render();
    } catch (error) {
      if (mine !== sequence) return;
      results = [];
      fill(list, h("li", { class: "option-empty", role: "presentation" }, error.message));
      list.hidden = false;
    }
  }, 180);

  input.addEventListener("input", run);
  input.addEventListener("focus", run);
  input.addEventListener("blur", () => setTimeout(close, 120));
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (list.hidden) return run();
      const step = event.key === "ArrowDown" ? 1 : -1;
      active = (active + step + results.length) % Math.max(1, results.length);
      render();
    } else if (event.key === "Enter") {
      if (!list.hidden && active >= 0) {
        event.preventDefault();
        pick(active);
      } else event.preventDefault();
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      event.stopPropagation();
      close();
    }
  });

  return { element: h("div", { class: "picker" }, input, list) };
}

export { avatar, dueLabel };
