// TaskFlow web app: sign-in, the board and list views, filters in the URL, insights, live.

import { ApiError, Session, query } from "./api.js";
import { activityChart, completionRing } from "./chart.js";
import { LiveConnection } from "./live.js";
import { People } from "./people.js";
import { openProfile } from "./profile.js";
import { ROLE_LABELS, canManage, memberDirectory, openMembersDialog, openProjectForm } from "./projects.js";
import {
  PRIORITIES,
  STATUSES,
  avatar,
  explainProblem,
  openTaskDialog,
  priorityLabel,
  statusLabel,
} from "./task-dialog.js";
import {
  confirmDialog,
  debounce,
  fill,
  dueLabel,
  h,
  hueClass,
  icon,
  initials,
  plural,
  relativeTime,
  startOfDay,
  toast,
} from "./ui.js";

const BOARD_PAGE = 50;
const LIST_PAGE = 20;
const UNDO_MS = 6000;
const SORTS = [
  { id: "created_at", label: "Created" },
  { id: "updated_at", label: "Updated" },
  { id: "due_date", label: "Due date" },
  { id: "priority", label: "Priority" },
  { id: "title", label: "Title" },
  { id: "status", label: "Status" },
];
const DUE_FILTERS = [
  { id: "", label: "Any due date" },
  { id: "overdue", label: "Overdue" },
  { id: "today", label: "Due today" },
  { id: "week", label: "Due in 7 days" },
];
const SCOPES = [
  { id: "", label: "All my tasks" },
  { id: "owned", label: "Created by me" },
  { id: "assigned", label: "Assigned to me" },
];

const PROJECT_SCOPES = [
  { id: "", label: "All tasks" },
  { id: "owned", label: "Created by me" },
  { id: "assigned", label: "Assigned to me" },
];

const session = new Session();
const people = new People(session);
const root = document.getElementById("app");
const known = new Map(); // task id → the latest task seen (for dependency titles)
const memberIds = memberDirectory(session);

let live = null;
let state = freshState();
let signInMessage = "";

function freshState() {
  return {
    me: null,
    filters: readFilters(),
    columns: Object.fromEntries(STATUSES.map((s) => [s.id, { tasks: [], total: 0 }])),
    list: { tasks: [], total: 0 },
    // Keyset cursors of the list's pages seen so far (`pageCursors.cursors[n]` loads page n),
    // for the filters in `pageCursors.key`: next and previous cost the same at any depth.
    pageCursors: { key: "", cursors: [] },
    loaded: false,
    loading: false,
    error: "",
    stats: null,
    activity: null,
    statsError: "",
    statsAt: null,
    changedAt: 0,
    pendingDeletes: new Map(),
    flash: new Set(),
    projects: [],
    projectNotice: "",
  };
}

// ---- the URL is the view ------------------------------------------------------------------

function split(value) {
  return (value || "")
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);
}

function readFilters() {
  const params = new URLSearchParams(location.search);
  const pick = (value, allowed) => (allowed.includes(value) ? value : "");
  const page = Number.parseInt(params.get("page") || "1", 10);
  const project = Number.parseInt(params.get("project") || "", 10);
  return {
    project: Number.isFinite(project) && project > 0 ? project : null,
    view: params.get("view") === "list" ? "list" : "board",
    q: (params.get("q") || "").slice(0, 200),
    status: split(params.get("status")).filter((s) => STATUSES.some((x) => x.id === s)),
    priority: split(params.get("priority")).filter((p) => PRIORITIES.some((x) => x.id === p)),
    tags: split(params.get("tags")).map((t) => t.toLowerCase()),
    due: pick(params.get("due") || "", ["overdue", "today", "week"]),
    scope: pick(params.get("scope") || "", ["owned", "assigned"]),
    sort: pick(params.get("sort") || "", SORTS.map((s) => s.id)),
    order: pick(params.get("order") || "", ["asc", "desc"]),
    page: Number.isFinite(page) && page > 0 ? page : 1,
  };
}

function filtersToSearch(filters) {
  const params = new URLSearchParams();
  if (filters.project) params.set("project", String(filters.project));
  if (filters.view === "list") params.set("view", "list");
  if (filters.q) params.set("q", filters.q);
  if (filters.status.length) params.set("status", filters.status.join(","));
  if (filters.priority.length) params.set("priority", filters.priority.join(","));
  if (filters.tags.length) params.set("tags", filters.tags.join(","));
  if (filters.due) params.set("due", filters.due);
  if (filters.scope) params.set("scope", filters.scope);
  if (filters.sort) params.set("sort", filters.sort);
  if (filters.order) params.set("order", filters.order);
  if (filters.view === "list" && filters.page > 1) params.set("page", String(filters.page));
  const text = params.toString();
  return text ? `?${text}` : location.pathname;
}

function setFilters(patch, { push = true } = {}) {
  const next = { ...state.filters, ...patch };
  if (!("page" in patch)) next.page = 1;
  if (next.view !== state.filters.view) state.loaded = false;
  const switched = next.project !== state.filters.project;
  if (switched) {
    state.loaded = false;
    state.stats = null;
    state.activity = null;
  }
  state.filters = next;
  const url = filtersToSearch(next);
  if (url !== location.search && !(url === location.pathname && !location.search)) {
    history[push ? "pushState" : "replaceState"](null, "", url);
  }
  renderProjects();
  renderToolbar();
  loadTasks();
  if (switched) {
    renderInsights();
    loadStats();
  }
}

function hasFilters(filters = state.filters) {
  return Boolean(
    filters.q || filters.status.length || filters.priority.length || filters.tags.length || filters.due || filters.scope,
  );
}

function apiParams(filters) {
  const params = {
    project_id: filters.project || undefined,
    search: filters.q || undefined,
    priority: filters.priority,
    tags: filters.tags.length ? filters.tags.join(",") : undefined,
    scope: filters.scope || undefined,
    sort_by: filters.sort || "created_at",
    sort_order: filters.order || (filters.sort === "title" || filters.sort === "due_date" ? "asc" : "desc"),
  };
  const now = new Date();
  if (filters.due === "overdue") params.overdue = "true";
  if (filters.due === "today") {
    const start = startOfDay(now);
    params.due_after = start.toISOString();
    params.due_before = new Date(start.getTime() + 86_400_000).toISOString();
  }
  if (filters.due === "week") {
    params.due_after = now.toISOString();
    params.due_before = new Date(now.getTime() + 7 * 86_400_000).toISOString();
  }
  return params;
}

// ---- data ---------------------------------------------------------------------------------

function remember(task) {
  if (task && task.id) known.set(task.id, { ...(known.get(task.id) || {}), ...task });
}

function titleOf(id) {
  const task = known.get(id);
  return task && task.title ? task.title : `Task #${id}`;
}

let loadSequence = 0;

async function loadTasks() {
  const mine = ++loadSequence;
  const filters = state.filters;
  const base = apiParams(filters);
  state.loading = true;
  renderProgress();
  try {
    if (filters.view === "board") {
      const statuses = filters.status.length ? filters.status : STATUSES.map((s) => s.id);
      const results = await Promise.all(
        statuses.map((status) => {
          const limit = Math.min(100, Math.max(BOARD_PAGE, state.columns[status].tasks.length));
          return session.get(`/tasks/${query({ ...base, status, limit })}`);
        }),
      );
      if (mine !== loadSequence) return;
      const columns = Object.fromEntries(STATUSES.map((s) => [s.id, { tasks: [], total: 0 }]));
      statuses.forEach((status, index) => {
        const { tasks, total, next_cursor } = results[index];
        columns[status] = { tasks, total, next_cursor };
      });
      markChanges(Object.values(columns).flatMap((c) => c.tasks));
      state.columns = columns;
    } else {
      const listed = { ...base, status: filters.status, limit: LIST_PAGE };
      const key = JSON.stringify(listed);
      if (state.pageCursors.key !== key) state.pageCursors = { key, cursors: [] };
      // A page reached by Next/Previous has its cursor; a page opened from a link is skipped to.
      const cursor = state.pageCursors.cursors[filters.page];
      const position = cursor ? { cursor } : { skip: (filters.page - 1) * LIST_PAGE };
      const result = await session.get(`/tasks/${query({ ...listed, ...position })}`);
      if (mine !== loadSequence) return;
      if (result.next_cursor) state.pageCursors.cursors[filters.page + 1] = result.next_cursor;
      if (!result.tasks.length && result.total && filters.page > 1) {
        setFilters({ page: Math.ceil(result.total / LIST_PAGE) }, { push: false });
        return;
      }
      markChanges(result.tasks);
      state.list = result;
    }
    state.error = "";
    state.loaded = true;
  } catch (error) {
    if (mine !== loadSequence) return;
    state.error = error.message;
  } finally {
    if (mine === loadSequence) {
      state.loading = false;
      renderProgress();
      renderContent();
    }
  }
  // A load that finishes after a newer one, or after signing out (state.me is null), names no one.
  if (mine !== loadSequence || !state.me) return;
  const ids = visibleTasks().flatMap((t) => [t.assignee_id, t.owner_id]);
  people.ensure(ids.filter((id) => id && id !== state.me.id));
}

/** Tasks that changed since the last load (someone else's edit, or a new task) flash once. */
function markChanges(tasks) {
  const first = !state.loaded;
  for (const task of tasks) {
    const before = known.get(task.id);
    if (!first && (!before || before.version !== task.version)) state.flash.add(task.id);
    remember(task);
  }
}

function visibleTasks() {
  return state.filters.view === "board"
    ? Object.values(state.columns).flatMap((c) => c.tasks)
    : state.list.tasks;
}

// Figures computed before the last change we know of are re-read with backoff (the stats
// service may still hold them in its cache for a moment).
let statsRetry = null;
let statsAttempt = 0;

async function loadStats() {
  clearTimeout(statsRetry);
  const project = state.filters.project;
  try {
    const scope = query({ project_id: state.filters.project || undefined });
    const [stats, activity] = await Promise.all([
      session.request("GET", `/stats/${scope}`),
      session.get(`/stats/activity${query({ days: 30, project_id: state.filters.project || undefined })}`),
    ]);
    if (project !== state.filters.project) return; // switched meanwhile: the new load renders
    state.stats = stats.data;
    state.activity = activity;
    state.statsError = "";
    state.statsAt = new Date();
    const generated = new Date(state.stats.generated_at).getTime();
    if (state.changedAt && generated < state.changedAt && statsAttempt < 6) {
      statsRetry = setTimeout(loadStats, 500 * 2 ** statsAttempt);
      statsAttempt += 1;
    } else {
      statsAttempt = 0;
    }
  } catch (error) {
    state.statsError = error.message;
  }
  renderInsights();
}

// Changes (ours or someone else's) are followed by one re-read of the view and the figures.
let resyncTimer = null;
function resync(delay = 150) {
  state.changedAt = Date.now();
  statsAttempt = 0;
  clearTimeout(resyncTimer);
  resyncTimer = setTimeout(() => {
    loadTasks();
    loadStats();
  }, delay);
}

// ---- actions ------------------------------------------------------------------------------

function taskContext() {
  return {
    session,
    people,
    me: state.me,
    titleOf,
    remember,
    projectId: state.filters.project,
    projectName: (id) => (projectById(id) || { name: `project ${id}` }).name,
    memberIds,
    onSaved: () => resync(0),
    onDelete: (task) => deleteTask(task),
  };
}

function openTask(taskId) {
  openTaskDialog(taskContext(), { taskId });
}

function newTask(preset = {}) {
  openTaskDialog(taskContext(), { preset });
}

async function setDone(task, done) {
  try {
    const { data } = await session.request(
      "PATCH",
      `/tasks/${task.id}/${done ? "complete" : "incomplete"}`,
    );
    remember(data);
    toast(done ? `Done: “${data.title}”` : `Reopened “${data.title}”`, { kind: "success", timeout: 3000 });
  } catch (error) {
    toast(explainProblem(error, titleOf, task.title), { kind: "error", timeout: 9000 });
  }
  resync(0);
}

/** Drag and drop between columns (the dialog's status field is the keyboard way). */
async function moveTask(task, status) {
  if (task.status === status) return;
  const from = state.columns[task.status];
  const to = state.columns[status];
  from.tasks = from.tasks.filter((t) => t.id !== task.id);
  from.total -= 1;
  to.tasks = [{ ...task, status }, ...to.tasks];
  to.total += 1;
  renderContent();
  try {
    const { data } = await session.request("PATCH", `/tasks/${task.id}`, {
      body: { status },
      headers: { "If-Match": `W/"${task.version}"` },
    });
    remember(data);
  } catch (error) {
    const message =
      error instanceof ApiError && error.status === 412
        ? `“${task.title}” was changed elsewhere, so it was not moved. The board now shows the latest version.`
        : explainProblem(error, titleOf, task.title);
    toast(message, { kind: "error", timeout: 9000 });
  }
  resync(0);
}

let dragged = null;

function dropTarget(section, status) {
  section.addEventListener("dragover", (event) => {
    if (!dragged || dragged.status === status) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    section.classList.add("drop-target");
  });
  section.addEventListener("dragleave", (event) => {
    if (!section.contains(event.relatedTarget)) section.classList.remove("drop-target");
  });
  section.addEventListener("drop", (event) => {
    event.preventDefault();
    section.classList.remove("drop-target");
    const task = dragged;
    dragged = null;
    if (task) moveTask(task, status);
  });
  return section;
}

/**
 * Delete after confirmation, but only once the undo toast has gone: Undo simply cancels the
 * request that has not been sent. Leaving the page sends the pending deletes at once.
 */
async function deleteTask(task) {
  const sure = await confirmDialog({
    title: "Delete this task?",
    message: `“${task.title}” will be deleted for you and anyone it is assigned to.`,
    confirmLabel: "Delete task",
    danger: true,
  });
  if (!sure) return;
  const commit = async () => {
    if (!state.pendingDeletes.has(task.id)) return;
    try {
      await session.request("DELETE", `/tasks/${task.id}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        toast(`Could not delete “${task.title}”: ${error.message}`, { kind: "error" });
      }
    }
    state.pendingDeletes.delete(task.id);
    resync(0);
  };
  state.pendingDeletes.set(task.id, task);
  renderContent();
  toast(`Deleted “${task.title}”`, {
    timeout: UNDO_MS,
    action: {
      label: "Undo",
      run: () => {
        state.pendingDeletes.delete(task.id);
        renderContent();
        toast(`Restored “${task.title}”`, { kind: "success", timeout: 2500 });
      },
    },
    onexpire: commit,
  });
}

window.addEventListener("pagehide", () => {
  for (const id of state.pendingDeletes.keys()) session.sendBeacon("DELETE", `/tasks/${id}`);
  state.pendingDeletes.clear();
});

// ---- live ---------------------------------------------------------------------------------

function startLive() {
  live = new LiveConnection(() => session.accessToken);
  live.addEventListener("status", (event) => {
    const { state: connection, reconnected, resync: missed } = event.detail;
    renderLive(connection, reconnected);
    if (missed) resync(0);
  });
  live.addEventListener("auth", async () => {
    // Refused token: refresh it, unless the session already has a newer one.
    const usable = live.lastToken !== session.accessToken || (await session.refresh());
    if (usable && live) live.reconnect();
  });
  live.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type.startsWith("project.")) {
      projectEvent(message);
      return;
    }
    const taskId = Number(message.subject_id || (message.data && message.data.task && message.data.task.id));
    if (message.type === "task.deleted" || message.type === "task.access_lost") {
      known.delete(taskId);
      for (const column of Object.values(state.columns)) {
        column.tasks = column.tasks.filter((t) => t.id !== taskId);
      }
      state.list.tasks = state.list.tasks.filter((t) => t.id !== taskId);
      renderContent();
    }
    resync();
  });
  live.start();
}

/** A project changed: re-read the list; a board the user lost is left with a clear message. */
function projectEvent(message) {
  const data = message.data || {};
  const projectId = Number(message.project_id || data.project_id || message.subject_id);
  memberIds.forget(projectId);
  const name = (data.project && data.project.name) || (projectById(projectId) || {}).name || "this project";
  const removedMe = message.type === "project.member_removed" && data.user_id === state.me.id;
  const deleted = message.type === "project.deleted" && data.project && data.project.owner_id !== state.me.id;
  if (removedMe || deleted || message.type === "project.access_lost") {
    const why = deleted
      ? `“${name}” was deleted by its owner`
      : data.reason === "left"
        ? `You left “${name}”`
        : `You were removed from “${name}”`;
    leaveBoard(projectId, `${why}, so its tasks are no longer on your screen.`);
  } else if (message.type === "project.member_added" && data.member && data.member.user_id === state.me.id) {
    toast(`You were added to “${name}”`, { kind: "success", timeout: 4000 });
  }
  loadProjects();
  if (projectId === state.filters.project) resync();
}

/** Leave the board of `projectId` if it is on screen, saying why (once: the removal's event
 * and the gateway's access_lost notice both lead here). */
function leaveBoard(projectId, notice) {
  const wasListed = Boolean(projectById(projectId));
  state.projects = state.projects.filter((p) => p.id !== projectId);
  if (state.filters.project === projectId) {
    state.projectNotice = notice;
    setFilters({ project: null });
  } else if (wasListed) {
    if (notice) toast(notice, { kind: "info", timeout: 6000 });
    renderProjects();
    resync();
  }
}

let bannerTimer = null;
function renderLive(connection, reconnected) {
  const banner = document.getElementById("live-banner");
  const dot = document.getElementById("live-dot");
  if (!banner || !dot) return;
  clearTimeout(bannerTimer);
  dot.className = ["live-dot", `live-${connection}`].join(" ");
  dot.title = { open: "Live updates on", connecting: "Connecting…", down: "Reconnecting…", idle: "" }[connection];
  dot.querySelector(".live-text").textContent = { open: "Live", connecting: "Connecting", down: "Offline", idle: "" }[connection];
  if (connection === "down") {
    banner.className = "banner banner-warning";
    fill(banner, icon("wifiOff", { size: 16 }), h("span", {}, live && live.everOpened ? "Live updates paused — connection lost. Reconnecting…" : "Live updates are not available right now. Retrying…"));
    banner.hidden = false;
  } else if (connection === "open" && reconnected) {
    banner.className = "banner banner-success";
    fill(banner, icon("check", { size: 16 }), h("span", {}, "Back online — your board is up to date."));
    banner.hidden = false;
    bannerTimer = setTimeout(() => {
      banner.hidden = true;
    }, 4000);
  } else {
    banner.hidden = true;
  }
}

// ---- rendering: the shell -----------------------------------------------------------------

function mountApp() {
  const search = h("input", {
    class: "search-input",
    id: "search",
    type: "search",
    placeholder: "Search tasks…",
    "aria-label": "Search tasks",
    autocomplete: "off",
    value: state.filters.q,
  });
  const runSearch = debounce(() => setFilters({ q: search.value.trim() }, { push: false }), 250);
  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && search.value) {
      search.value = "";
      setFilters({ q: "" }, { push: false });
    }
  });

  const me = state.me;
  const header = h(
    "header",
    { class: "topbar" },
    h(
      "div",
      { class: "topbar-inner" },
      h("a", { class: "brand", href: "/", "aria-label": "TaskFlow home" }, logo(), h("span", { class: "brand-name" }, "TaskFlow")),
      h("label", { class: "search" }, icon("search", { size: 16 }), search, h("kbd", { class: "kbd", "aria-hidden": "true" }, "/")),
      h(
        "div",
        { class: "topbar-actions" },
        h("span", { id: "live-dot", class: "live-dot live-connecting", role: "status" }, h("span", { class: "live-pulse", "aria-hidden": "true" }), h("span", { class: "live-text" }, "Connecting")),
        h("button", { class: "button button-primary new-task", type: "button", onclick: () => newTask(), "aria-label": "New task", "aria-keyshortcuts": "n" }, icon("plus", { size: 16 }), h("span", { class: "label-wide" }, "New task")),
        h(
          "button",
          { class: "account-button", type: "button", id: "account-button", "aria-label": `Account: ${me.full_name || me.username}`, onclick: () => openProfile({ session, me: state.me, onUpdated: (user) => { state.me = user; people.remember(user); updateAccountButton(); }, onDeleted: () => accountDeleted() }) },
          h("span", { class: ["avatar", "avatar-sm", hueClass(me.id)], "aria-hidden": "true", id: "account-avatar" }, initials(me.full_name || me.username)),
        ),
        h("button", { class: "icon-button", type: "button", onclick: () => signOut(), "aria-label": "Sign out", title: "Sign out" }, icon("logout")),
      ),
    ),
    h("div", { class: "progress", id: "progress", hidden: true }),
    h("div", { id: "live-banner", class: "banner", hidden: true, role: "status", "aria-live": "polite" }),
  );

  fill(root, 
    h("a", { class: "skip-link", href: "#content" }, "Skip to tasks"),
    header,
    h(
      "div",
      { class: "layout" },
      h("main", { class: "main", id: "content", tabindex: "-1" }, h("div", { id: "projects", class: "project-bar" }), h("div", { id: "project-notice", class: "banner banner-warning project-notice", role: "alert", hidden: true }), h("div", { id: "toolbar", class: "toolbar" }), h("div", { id: "view" })),
      h("aside", { class: "insights", id: "insights", "aria-label": "Insights" }),
    ),
  );
  root.removeAttribute("aria-busy");
  renderProjects();
  renderToolbar();
  renderContent();
  renderInsights();
}

// ---- projects -----------------------------------------------------------------------------

function projectById(id) {
  return state.projects.find((p) => p.id === id) || null;
}

async function loadProjects() {
  try {
    state.projects = (await session.get("/projects/")).projects;
  } catch (error) {
    toast(`Projects could not be loaded: ${error.message}`, { kind: "error" });
    return;
  }
  const current = state.filters.project;
  if (current && !projectById(current)) {
    leaveBoard(current, "That project is not shared with you (any more), so you are back on your own tasks.");
    return;
  }
  renderProjects();
  renderInsights();
}

function renderProjects() {
  const bar = document.getElementById("projects");
  if (!bar) return;
  const current = projectById(state.filters.project);
  const switcher = h(
    "label",
    { class: "select-wrap project-switch" },
    h("span", { class: "visually-hidden" }, "Board"),
    icon("board", { size: 16 }),
    h(
      "select",
      { class: "select", id: "project-switcher", onchange: (event) => setFilters({ project: Number(event.target.value) || null }) },
      h("option", { value: "", selected: !state.filters.project }, "My tasks"),
      state.projects.map((p) => h("option", { value: String(p.id), selected: p.id === state.filters.project }, p.name)),
    ),
  );
  const onSaved = (project) => {
    loadProjects().then(() => setFilters({ project: project.id }));
  };
  fill(
    bar,
    switcher,
    current
      ? h(
          "div",
          { class: "project-meta" },
          h("span", { class: ["role-badge", `role-${current.role}`], id: "project-role" }, ROLE_LABELS[current.role]),
          h("button", { type: "button", class: "button button-small", id: "project-members", onclick: () => openMembersDialog({ session, people, me: state.me, onChanged: () => loadProjects(), onLeft: (p) => leaveBoard(p.id, `You left “${p.name}”.`) }, current) }, icon("users", { size: 14 }), h("span", {}, `Members · ${current.member_count}`)),
          canManage(current) ? h("button", { type: "button", class: "button button-ghost button-small", id: "rename-project", onclick: () => openProjectForm({ session, onSaved }, current) }, "Rename") : null,
          current.role === "owner" ? h("button", { type: "button", class: "button button-ghost button-small", id: "delete-project", onclick: () => deleteProject(current) }, "Delete") : null,
        )
      : null,
    h("button", { type: "button", class: "button button-ghost button-small", id: "new-project", "aria-label": "New project", title: "New project", onclick: () => openProjectForm({ session, onSaved }) }, icon("plus", { size: 14 }), h("span", { class: "label-wide" }, "New project")),
  );
  const notice = document.getElementById("project-notice");
  if (notice) {
    fill(notice, icon("alert", { size: 16 }), h("span", {}, state.projectNotice), h("button", { type: "button", class: "icon-button icon-button-small", "aria-label": "Dismiss", onclick: () => { state.projectNotice = ""; renderProjects(); } }, icon("x", { size: 14 })));
    notice.hidden = !state.projectNotice;
  }
}

async function deleteProject(project) {
  const sure = await confirmDialog({
    title: "Delete this project?",
    message: `“${project.name}” and all its tasks will be deleted for every member. This cannot be undone.`,
    confirmLabel: "Delete project",
    danger: true,
    requireText: project.name,
  });
  if (!sure) return;
  try {
    await session.request("DELETE", `/projects/${project.id}`);
    toast(`Deleted “${project.name}”`, { kind: "success" });
    leaveBoard(project.id, "");
    loadProjects();
  } catch (error) {
    toast(error.message, { kind: "error" });
  }
}

function updateAccountButton() {
  const avatarElement = document.getElementById("account-avatar");
  if (avatarElement) avatarElement.textContent = initials(state.me.full_name || state.me.username);
  const button = document.getElementById("account-button");
  if (button) button.setAttribute("aria-label", `Account: ${state.me.full_name || state.me.username}`);
}

function logo() {
  const wrap = h("span", { class: "logo", "aria-hidden": "true" });
  wrap.append(icon("check", { size: 16 }));
  return wrap;
}

function renderProgress() {
  const bar = document.getElementById("progress");
  if (bar) bar.hidden = !state.loading || !state.loaded;
  const view = document.getElementById("view");
  if (view) view.setAttribute("aria-busy", state.loading ? "true" : "false");
}

// ---- rendering: toolbar (filters, sort, view) ---------------------------------------------

function renderToolbar() {
  const bar = document.getElementById("toolbar");
  if (!bar) return;
  const f = state.filters;
  const viewSwitch = h(
    "div",
    { class: "view-switch", role: "group", "aria-label": "View" },
    [
      { id: "board", label: "Board", icon: "board" },
      { id: "list", label: "List", icon: "list" },
    ].map((v) =>
      h(
        "button",
        { type: "button", class: ["view-button", f.view === v.id && "active"], "aria-pressed": f.view === v.id ? "true" : "false", onclick: () => f.view !== v.id && setFilters({ view: v.id }) },
        icon(v.icon, { size: 16 }),
        h("span", {}, v.label),
      ),
    ),
  );

  const chips = (items, selected, key, label) =>
    h(
      "div",
      { class: "chip-group", role: "group", "aria-label": label },
      items.map((item) => {
        const on = selected.includes(item.id);
        return h(
          "button",
          {
            type: "button",
            class: ["filter-chip", on && "on", `chip-${item.id}`],
            "aria-pressed": on ? "true" : "false",
            onclick: () => setFilters({ [key]: on ? selected.filter((x) => x !== item.id) : [...selected, item.id] }),
          },
          key === "status" ? h("span", { class: ["status-dot", `status-${item.id}`], "aria-hidden": "true" }) : h("span", { class: ["priority-mark", `priority-${item.id}`], "aria-hidden": "true" }),
          item.label,
        );
      }),
    );

  const select = (id, label, options, value, onchange) =>
    h(
      "label",
      { class: "select-wrap" },
      h("span", { class: "visually-hidden" }, label),
      h("select", { class: "select", id, onchange: (event) => onchange(event.target.value) }, options.map((o) => h("option", { value: o.id, selected: o.id === value }, o.label))),
    );

  const tagInput = h("input", {
    class: "tag-filter-input",
    id: "filter-tags",
    placeholder: f.tags.length ? "Add tag" : "Filter by tag",
    "aria-label": "Filter by tag",
    autocomplete: "off",
    onkeydown: (event) => {
      if (event.key === "Enter" && event.target.value.trim()) {
        event.preventDefault();
        const tag = event.target.value.trim().toLowerCase();
        if (!f.tags.includes(tag)) setFilters({ tags: [...f.tags, tag] });
      }
    },
  });
  const tags = h(
    "div",
    { class: "tag-filter" },
    icon("tag", { size: 14 }),
    f.tags.map((tag) =>
      h("button", { type: "button", class: "chip chip-on", "aria-label": `Remove tag filter ${tag}`, onclick: () => setFilters({ tags: f.tags.filter((t) => t !== tag) }) }, `#${tag}`, icon("x", { size: 12 })),
    ),
    tagInput,
  );

  const sortOrder = f.order || (f.sort === "title" || f.sort === "due_date" ? "asc" : "desc");
  const sort = h(
    "div",
    { class: "sort" },
    select("sort", "Sort by", SORTS.map((s) => ({ id: s.id, label: `Sort: ${s.label}` })), f.sort || "created_at", (value) => setFilters({ sort: value === "created_at" ? "" : value, order: "" })),
    h("button", { type: "button", class: "icon-button", id: "sort-order", "aria-label": sortOrder === "asc" ? "Ascending — switch to descending" : "Descending — switch to ascending", title: sortOrder === "asc" ? "Ascending" : "Descending", onclick: () => setFilters({ order: sortOrder === "asc" ? "desc" : "asc" }) }, h("span", { class: ["sort-arrow", sortOrder] }, icon("sort", { size: 16 }))),
  );

  fill(bar, 
    h(
      "div",
      { class: "toolbar-row" },
      viewSwitch,
      h("div", { class: "toolbar-group" }, select("scope", "Whose tasks", f.project ? PROJECT_SCOPES : SCOPES, f.scope, (value) => setFilters({ scope: value })), select("due", "Due date", DUE_FILTERS, f.due, (value) => setFilters({ due: value }))),
      sort,
    ),
    h(
      "div",
      { class: "toolbar-row toolbar-filters" },
      chips(STATUSES, f.status, "status", "Status"),
      chips([...PRIORITIES].reverse(), f.priority, "priority", "Priority"),
      tags,
      hasFilters() ? h("button", { type: "button", class: "button button-ghost button-small", onclick: () => clearFilters() }, "Clear filters") : null,
    ),
  );
}

function clearFilters() {
  const search = document.getElementById("search");
  if (search) search.value = "";
  setFilters({ q: "", status: [], priority: [], tags: [], due: "", scope: "" });
}

// ---- rendering: board and list ------------------------------------------------------------

function renderContent() {
  const view = document.getElementById("view");
  if (!view) return;
  if (!state.loaded && state.error) {
    fill(view, errorState(state.error));
    return;
  }
  if (!state.loaded) {
    fill(view, state.filters.view === "board" ? boardSkeleton() : listSkeleton());
    return;
  }
  const content = state.filters.view === "board" ? renderBoard() : renderList();
  fill(view, state.error ? h("div", { class: "inline-error", role: "alert" }, icon("alert", { size: 16 }), state.error, h("button", { class: "button button-small", type: "button", onclick: () => loadTasks() }, "Try again")) : null, content);
  state.flash.clear();
}

function errorState(message, retry = () => loadTasks()) {
  return h(
    "div",
    { class: "empty", role: "alert" },
    h("div", { class: "empty-icon" }, icon("alert", { size: 22 })),
    h("h2", { class: "empty-title" }, "Your tasks could not be loaded"),
    h("p", { class: "empty-text" }, message),
    h("button", { class: "button button-primary", type: "button", onclick: retry }, "Try again"),
  );
}

function visible(tasks) {
  return tasks.filter((t) => !state.pendingDeletes.has(t.id));
}

function renderBoard() {
  const f = state.filters;
  const statuses = f.status.length ? STATUSES.filter((s) => f.status.includes(s.id)) : STATUSES;
  const total = statuses.reduce((sum, s) => sum + state.columns[s.id].total, 0);
  if (!total && !hasFilters()) return welcome();
  return h(
    "div",
    { class: ["board", `board-${statuses.length}`] },
    statuses.map((status) => {
      const column = state.columns[status.id];
      const tasks = visible(column.tasks);
      const hidden = column.tasks.length - tasks.length;
      const count = column.total - hidden;
      return dropTarget(h(
        "section",
        { class: ["column", `column-${status.id}`], "aria-labelledby": `column-${status.id}`, dataset: { status: status.id } },
        h(
          "header",
          { class: "column-head" },
          h("span", { class: ["status-dot", `status-${status.id}`], "aria-hidden": "true" }),
          h("h2", { class: "column-title", id: `column-${status.id}` }, status.label),
          h("span", { class: "count", "aria-label": plural(count, "task") }, count),
          status.id !== "done"
            ? h("button", { type: "button", class: "icon-button icon-button-small", "aria-label": `New task in ${status.label}`, onclick: () => newTask({ status: status.id }) }, icon("plus", { size: 16 }))
            : null,
        ),
        h(
          "ol",
          { class: "cards", "aria-label": `${status.label} tasks` },
          tasks.length
            ? tasks.map((task) => h("li", {}, card(task)))
            : h("li", { class: "column-empty" }, hasFilters() ? "No matching tasks" : status.id === "done" ? "Finished tasks land here" : "Nothing here yet"),
        ),
        hasMore(column)
          ? h("button", { type: "button", class: "button button-ghost more", onclick: () => loadMore(status.id) }, column.total > column.tasks.length ? `Show more (${column.total - column.tasks.length})` : "Show more")
          : null,
      ), status.id);
    }),
  );
}

/** Whether a column has more tasks to show: the server's `next_cursor` says so (a server
 * without cursors: fewer tasks shown than its total). */
function hasMore(column) {
  return "next_cursor" in column ? Boolean(column.next_cursor) : column.tasks.length < column.total;
}

async function loadMore(status) {
  const column = state.columns[status];
  // The cursor continues after the last task shown, whatever was added or removed meanwhile.
  const position = column.next_cursor ? { cursor: column.next_cursor } : { skip: column.tasks.length };
  try {
    const result = await session.get(`/tasks/${query({ ...apiParams(state.filters), status, ...position, limit: BOARD_PAGE })}`);
    for (const task of result.tasks) remember(task);
    const seen = new Set(column.tasks.map((t) => t.id));
    column.tasks = [...column.tasks, ...result.tasks.filter((t) => !seen.has(t.id))];
    column.total = result.total;
    column.next_cursor = result.next_cursor;
    renderContent();
  } catch (error) {
    toast(error.message, { kind: "error" });
  }
}

function welcome() {
  const project = projectById(state.filters.project);
  if (project) {
    return h(
      "div",
      { class: "empty welcome" },
      h("div", { class: "empty-icon" }, icon("board", { size: 24 })),
      h("h2", { class: "empty-title" }, `“${project.name}” has no tasks yet`),
      h("p", { class: "empty-text" }, "Tasks created here belong to the project: every member sees them, edits them and watches them change live."),
      h("button", { class: "button button-primary", type: "button", onclick: () => newTask() }, icon("plus", { size: 16 }), "Add the first task"),
    );
  }
  return h(
    "div",
    { class: "empty welcome" },
    h("div", { class: "empty-icon" }, icon("board", { size: 24 })),
    h("h2", { class: "empty-title" }, `Welcome, ${state.me.full_name || state.me.username}`),
    h("p", { class: "empty-text" }, "Your board is empty. Add a first task — give it a priority, a due date, tags, someone to do it, or other tasks it waits on."),
    h("button", { class: "button button-primary", type: "button", onclick: () => newTask() }, icon("plus", { size: 16 }), "Create your first task"),
  );
}

function blockers(task) {
  return task.depends_on.filter((id) => {
    const dep = known.get(id);
    return !dep || dep.status !== "done";
  });
}

function card(task) {
  const done = task.status === "done";
  const due = dueLabel(task.due_date, done);
  const assignee = task.assignee_id ? people.byId.get(task.assignee_id) : null;
  const waiting = task.blocked ? blockers(task) : [];
  const element = h(
    "article",
    {
      class: ["card", `priority-${task.priority}`, done && "card-done", task.blocked && "card-blocked", state.flash.has(task.id) && "flash"],
      dataset: { taskId: String(task.id) },
      draggable: task.project_id || task.owner_id === state.me.id || task.assignee_id === state.me.id ? "true" : "false",
      ondragstart: (event) => {
        dragged = task;
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", String(task.id));
        event.currentTarget.classList.add("dragging");
      },
      ondragend: (event) => {
        dragged = null;
        event.currentTarget.classList.remove("dragging");
        for (const target of document.querySelectorAll(".drop-target")) target.classList.remove("drop-target");
      },
      onclick: (event) => {
        if (event.target.closest("button, a, input")) return;
        openTask(task.id);
      },
    },
    h(
      "div",
      { class: "card-top" },
      doneToggle(task),
      h("button", { type: "button", class: "card-title", onclick: () => openTask(task.id) }, task.title),
    ),
    task.description ? h("p", { class: "card-desc" }, task.description) : null,
    task.blocked
      ? h(
          "p",
          { class: "blocked-by" },
          icon("blocked", { size: 14 }),
          h("span", {}, "Blocked by ", waiting.length ? waiting.map((id) => `“${titleOf(id)}”`).join(", ") : "open dependencies"),
        )
      : null,
    h(
      "div",
      { class: "card-meta" },
      h("span", { class: ["pill", `pill-${task.priority}`] }, priorityLabel(task.priority)),
      due ? h("span", { class: ["due", due.overdue && "due-overdue", due.soon && "due-soon"], title: due.title }, icon("calendar", { size: 13 }), due.text) : null,
      task.depends_on.length && !task.blocked ? h("span", { class: "deps", title: "Dependencies" }, icon("link", { size: 13 }), task.depends_on.length) : null,
      task.tags.slice(0, 4).map((tag) =>
        h("button", { type: "button", class: "tag", "aria-label": `Filter by tag ${tag}`, onclick: () => !state.filters.tags.includes(tag) && setFilters({ tags: [...state.filters.tags, tag] }) }, `#${tag}`),
      ),
      h("span", { class: "spacer" }),
      assignee || task.assignee_id ? h("span", { class: "assignee", title: `Assigned to ${people.name(task.assignee_id)}` }, avatar(assignee || { id: task.assignee_id, username: people.name(task.assignee_id) })) : null,
    ),
  );
  return element;
}

function doneToggle(task) {
  const done = task.status === "done";
  return h(
    "button",
    {
      type: "button",
      class: ["check", done && "checked"],
      "aria-pressed": done ? "true" : "false",
      "aria-label": done ? `Reopen “${task.title}”` : `Mark “${task.title}” as done`,
      title: done ? "Reopen" : task.blocked ? "Blocked by open dependencies" : "Mark as done",
      onclick: () => setDone(task, !done),
    },
    icon("check", { size: 14 }),
  );
}

function boardSkeleton() {
  return h(
    "div",
    { class: "board board-3", "aria-hidden": "true" },
    STATUSES.map((status) =>
      h(
        "section",
        { class: "column" },
        h("header", { class: "column-head" }, h("span", { class: ["status-dot", `status-${status.id}`] }), h("span", { class: "column-title" }, status.label)),
        h("div", { class: "cards" }, [0, 1, 2].slice(0, status.id === "done" ? 1 : 3).map(() => h("div", { class: "card skeleton" }, h("span", { class: "skeleton-line" }), h("span", { class: "skeleton-line short" })))),
      ),
    ),
  );
}

function listSkeleton() {
  return h("div", { class: "list-card", "aria-hidden": "true" }, [0, 1, 2, 3, 4].map(() => h("div", { class: "list-skeleton" }, h("span", { class: "skeleton-line" }))));
}

function renderList() {
  const f = state.filters;
  const tasks = visible(state.list.tasks);
  const total = state.list.total - (state.list.tasks.length - tasks.length);
  if (!total && !hasFilters()) return welcome();
  const sortBy = f.sort || "created_at";
  const order = f.order || (sortBy === "title" || sortBy === "due_date" ? "asc" : "desc");
  const header = (id, label, className) => {
    const active = sortBy === id;
    return h(
      "th",
      { scope: "col", class: className, "aria-sort": active ? (order === "asc" ? "ascending" : "descending") : "none" },
      h(
        "button",
        { type: "button", class: ["th-sort", active && "active"], onclick: () => setFilters({ sort: id === "created_at" ? "" : id, order: active ? (order === "asc" ? "desc" : "asc") : "" }) },
        label,
        active ? h("span", { class: "th-arrow", "aria-hidden": "true" }, order === "asc" ? "↑" : "↓") : null,
      ),
    );
  };
  // Past its cap the total is a lower bound ("1000+"); whether a next page exists is the cursor's.
  const exact = state.list.total_exact !== false;
  const from = total ? (f.page - 1) * LIST_PAGE + 1 : 0;
  const last = (f.page - 1) * LIST_PAGE + tasks.length;
  const to = exact ? Math.min(total, last) : last;
  const pages = Math.max(1, Math.ceil(total / LIST_PAGE));
  const hasNext = "next_cursor" in state.list ? Boolean(state.list.next_cursor) : f.page < pages;
  return h(
    "div",
    { class: "list-card" },
    tasks.length
      ? h(
          "table",
          { class: "task-table" },
          h("caption", { class: "visually-hidden" }, "Tasks"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "col-check" }, h("span", { class: "visually-hidden" }, "Done")), header("title", "Task", "col-title"), header("status", "Status", "col-status"), header("priority", "Priority", "col-priority"), header("due_date", "Due", "col-due"), h("th", { scope: "col", class: "col-assignee" }, "Assignee"), header("updated_at", "Updated", "col-updated"))),
          h(
            "tbody",
            {},
            tasks.map((task) => {
              const due = dueLabel(task.due_date, task.status === "done");
              return h(
                "tr",
                { class: ["row", task.status === "done" && "row-done", state.flash.has(task.id) && "flash"], dataset: { taskId: String(task.id) } },
                h("td", { class: "col-check" }, doneToggle(task)),
                h(
                  "td",
                  { class: "col-title" },
                  h("button", { type: "button", class: "row-title", onclick: () => openTask(task.id) }, task.title),
                  h(
                    "div",
                    { class: "row-sub" },
                    task.blocked ? h("span", { class: "blocked-inline" }, icon("blocked", { size: 12 }), `Blocked by ${blockers(task).map((id) => `“${titleOf(id)}”`).join(", ") || "open dependencies"}`) : null,
                    task.tags.map((tag) => h("button", { type: "button", class: "tag", "aria-label": `Filter by tag ${tag}`, onclick: () => !f.tags.includes(tag) && setFilters({ tags: [...f.tags, tag] }) }, `#${tag}`)),
                  ),
                ),
                h("td", { class: "col-status" }, h("span", { class: ["status-badge", `badge-${task.status}`] }, h("span", { class: ["status-dot", `status-${task.status}`], "aria-hidden": "true" }), statusLabel(task.status))),
                h("td", { class: "col-priority" }, h("span", { class: ["pill", `pill-${task.priority}`] }, priorityLabel(task.priority))),
                h("td", { class: "col-due" }, due ? h("span", { class: ["due", due.overdue && "due-overdue", due.soon && "due-soon"], title: due.title }, due.text) : h("span", { class: "muted" }, "—")),
                h("td", { class: "col-assignee" }, task.assignee_id ? h("span", { class: "assignee-cell" }, avatar(people.byId.get(task.assignee_id) || { id: task.assignee_id, username: people.name(task.assignee_id) }), h("span", { class: "assignee-name" }, people.name(task.assignee_id))) : h("span", { class: "muted" }, "—")),
                h("td", { class: "col-updated muted" }, relativeTime(task.updated_at)),
              );
            }),
          ),
        )
      : h("div", { class: "empty empty-compact" }, h("h2", { class: "empty-title" }, "No tasks match these filters"), h("p", { class: "empty-text" }, "Try removing a filter or searching for something else."), h("button", { class: "button", type: "button", onclick: () => clearFilters() }, "Clear filters")),
    total
      ? h(
          "nav",
          { class: "pager", "aria-label": "Pages" },
          h("span", { class: "pager-text" }, `${from}–${to} of ${total}${exact ? "" : "+"}`),
          h("button", { type: "button", class: "icon-button", "aria-label": "Previous page", disabled: f.page <= 1, onclick: () => setFilters({ page: f.page - 1 }) }, icon("chevronLeft")),
          h("span", { class: "pager-page", "aria-current": "page" }, exact ? `Page ${f.page} of ${pages}` : `Page ${f.page}`),
          h("button", { type: "button", class: "icon-button", "aria-label": "Next page", disabled: !hasNext, onclick: () => setFilters({ page: f.page + 1 }) }, icon("chevronRight")),
        )
      : null,
  );
}

// ---- rendering: insights ------------------------------------------------------------------

function renderInsights() {
  const panel = document.getElementById("insights");
  if (!panel) return;
  const stats = state.stats;
  const head = h(
    "div",
    { class: "insights-head" },
    h("h2", { class: "insights-title" }, icon("chart", { size: 16 }), "Insights", projectById(state.filters.project) ? h("span", { class: "insights-scope", id: "insights-scope" }, ` · ${projectById(state.filters.project).name}`) : null),
    state.statsAt ? h("span", { class: "muted small", title: state.statsAt.toLocaleString() }, stats && stats.stale ? "may be out of date" : "up to date") : null,
  );
  if (!stats && state.statsError) {
    fill(panel, head, h("div", { class: "insights-card" }, h("p", { class: "inline-error", role: "alert" }, icon("alert", { size: 16 }), state.statsError), h("button", { type: "button", class: "button button-small", onclick: () => loadStats() }, "Try again")));
    return;
  }
  if (!stats) {
    fill(panel, head, h("div", { class: "insights-card skeleton-card" }, h("span", { class: "skeleton-line" }), h("span", { class: "skeleton-line short" })));
    return;
  }
  const figure = (id, label, value, tone) =>
    h("div", { class: ["figure", tone && value ? `figure-${tone}` : ""], id: `stat-${id}` }, h("span", { class: "figure-value" }, value), h("span", { class: "figure-label" }, label));
  const byPriority = PRIORITIES.slice().reverse();
  const maxPriority = Math.max(1, ...byPriority.map((p) => stats.by_priority[p.id] || 0));
  fill(panel, 
    head,
    stats.stale || state.statsError
      ? h("p", { class: "stale-note", role: "status" }, icon("clock", { size: 14 }), state.statsError || "Showing the last figures we have: the statistics service is catching up.")
      : null,
    h(
      "section",
      { class: "insights-card progress-card", "aria-label": "Completion" },
      completionRing(stats.completed_percentage),
      h("div", {}, h("div", { class: "progress-title", id: "stat-completed" }, `${stats.completed_tasks} of ${plural(stats.total_tasks, "task")} done`), h("div", { class: "muted small" }, `${stats.completed_last_7_days} completed in the last 7 days`)),
    ),
    h(
      "section",
      { class: "figures", "aria-label": "Figures" },
      figure("total", "Total", stats.total_tasks),
      figure("in-progress", "In progress", stats.by_status.in_progress || 0),
      figure("overdue", "Overdue", stats.overdue, "danger"),
      figure("due-soon", "Due in 7 days", stats.due_next_7_days, "warning"),
    ),
    h(
      "section",
      { class: "insights-card", "aria-labelledby": "by-priority" },
      h("h3", { class: "card-heading", id: "by-priority" }, "By priority"),
      h(
        "ul",
        { class: "bars" },
        byPriority.map((p) => {
          const value = stats.by_priority[p.id] || 0;
          const bar = h("span", { class: ["bar-fill", `fill-${p.id}`] });
          bar.style.width = `${(value / maxPriority) * 100}%`;
          return h("li", { class: "bar-row" }, h("span", { class: "bar-label" }, p.label), h("span", { class: "bar-track" }, bar), h("span", { class: "bar-value" }, value));
        }),
      ),
    ),
    h(
      "section",
      { class: "insights-card", "aria-labelledby": "activity-title" },
      h("h3", { class: "card-heading", id: "activity-title" }, "Last 30 days"),
      activityChart(state.activity || []),
    ),
  );
}

// ---- sign-in ------------------------------------------------------------------------------

function renderSignIn(mode = "signin") {
  if (live) {
    live.stop();
    live = null;
  }
  document.title = "Sign in · TaskFlow";
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  const notice = signInMessage ? h("div", { class: "form-notice", role: "status" }, signInMessage) : null;
  signInMessage = "";
  const signup = mode === "signup";
  const fields = signup
    ? [
        authField("auth-name", "Full name", { autocomplete: "name", maxlength: 200 }, "optional"),
        authField("auth-username", "Username", { autocomplete: "username", required: true, minlength: 3, maxlength: 50, pattern: "[A-Za-z0-9._\\-]+" }, "Letters, digits, dots, dashes"),
        authField("auth-email", "Email", { type: "email", autocomplete: "email", required: true }),
        authField("auth-password", "Password", { type: "password", autocomplete: "new-password", required: true, minlength: 8 }, "At least 8 characters"),
      ]
    : [
        authField("auth-username", "Username or email", { autocomplete: "username", required: true }),
        authField("auth-password", "Password", { type: "password", autocomplete: "current-password", required: true }),
      ];
  const submit = h("button", { class: "button button-primary button-block", type: "submit" }, signup ? "Create account" : "Sign in");
  const form = h(
    "form",
    {
      class: "auth-form",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        const value = (id) => form.querySelector(`#${id}`).value;
        const username = value("auth-username").trim();
        const password = value("auth-password");
        if (!username || !password) {
          error.textContent = "Enter your username and password.";
          error.hidden = false;
          return;
        }
        submit.disabled = true;
        submit.classList.add("is-busy");
        try {
          if (signup) {
            await session.signUp({ username, password, email: value("auth-email").trim(), full_name: value("auth-name").trim() });
          } else {
            await session.signIn(username, password);
          }
        } catch (problem) {
          error.textContent = problem.message;
          error.hidden = false;
          submit.disabled = false;
          submit.classList.remove("is-busy");
        }
      },
    },
    notice,
    error,
    fields,
    submit,
  );
  fill(root, 
    h(
      "div",
      { class: "auth" },
      h(
        "section",
        { class: "auth-aside", "aria-hidden": "true" },
        h("div", { class: "brand brand-light" }, logo(), h("span", { class: "brand-name" }, "TaskFlow")),
        h("div", { class: "auth-pitch" }, h("p", { class: "pitch-title" }, "Calm, shared task boards."), h("ul", { class: "pitch-list" }, ["Plan with priorities, due dates and tags", "Dependencies that keep work in order", "Live updates for everyone on the task"].map((line) => h("li", {}, icon("check", { size: 16 }), line)))),
        pitchBoard(),
      ),
      h(
        "main",
        { class: "auth-main" },
        h(
          "div",
          { class: "auth-card" },
          h("div", { class: "brand auth-brand" }, logo(), h("span", { class: "brand-name" }, "TaskFlow")),
          h("h1", { class: "auth-title" }, signup ? "Create your account" : "Welcome back"),
          h("p", { class: "auth-sub" }, signup ? "It takes a few seconds." : "Sign in to see your board."),
          form,
          h(
            "p",
            { class: "auth-switch" },
            signup ? "Already have an account? " : "New to TaskFlow? ",
            h("button", { type: "button", class: "link-button", onclick: () => renderSignIn(signup ? "signin" : "signup") }, signup ? "Sign in" : "Create an account"),
          ),
        ),
      ),
    ),
  );
  root.removeAttribute("aria-busy");
  form.querySelector("input").focus();
}

function pitchBoard() {
  const mini = (title, tone, lines) => h("div", { class: "mini-column" }, h("div", { class: "mini-head" }, h("span", { class: ["status-dot", `status-${tone}`] }), title), lines.map((w) => h("div", { class: "mini-card" }, h("span", { class: "mini-line" }), h("span", { class: ["mini-line", `w-${w}`] }))));
  return h("div", { class: "mini-board" }, mini("To do", "todo", [60, 40, 75]), mini("In progress", "in_progress", [50, 70]), mini("Done", "done", [45]));
}

function authField(id, label, attrs, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label, hint === "optional" ? h("span", { class: "optional" }, " (optional)") : null),
    h("input", { class: "input", id, name: id, ...attrs }),
    hint && hint !== "optional" ? h("span", { class: "hint" }, hint) : null,
  );
}

async function signOut() {
  for (const id of state.pendingDeletes.keys()) session.sendBeacon("DELETE", `/tasks/${id}`);
  state.pendingDeletes.clear();
  signInMessage = "You have signed out.";
  await session.signOut();
}

function accountDeleted() {
  signInMessage = "Your account has been deleted.";
  session.end("Your account has been deleted.");
}

// ---- start --------------------------------------------------------------------------------

async function enterApp() {
  state = freshState();
  document.title = "TaskFlow";
  try {
    state.me = await session.get("/users/me");
  } catch (error) {
    if (!session.signedIn) return; // the session ended: the sign-in screen is already shown
    fill(root, h("div", { class: "boot" }, errorState(error.message, () => enterApp())));
    return;
  }
  people.remember(state.me);
  mountApp();
  startLive();
  loadProjects();
  loadTasks();
  loadStats();
  // Fill the directory cache once, for assignee names (a small team fits in one page).
  people.search("").catch(() => {});
}

people.onchange(() => renderContent());

session.addEventListener("change", () => {
  if (session.signedIn && !state.me) enterApp();
  else if (!session.signedIn) {
    state = freshState();
    renderSignIn();
  }
});
session.addEventListener("ended", (event) => {
  signInMessage = signInMessage || event.detail;
  state = freshState();
  for (const dialog of document.querySelectorAll("dialog")) dialog.close();
  renderSignIn();
});

window.addEventListener("popstate", () => {
  if (!state.me) return;
  const next = readFilters();
  if (next.view !== state.filters.view || next.project !== state.filters.project) state.loaded = false;
  const switched = next.project !== state.filters.project;
  state.filters = next;
  renderProjects();
  if (switched) loadStats();
  const search = document.getElementById("search");
  if (search) search.value = state.filters.q;
  renderToolbar();
  loadTasks();
});

document.addEventListener("keydown", (event) => {
  if (!state.me || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (typing || document.querySelector("dialog[open]")) return;
  if (event.key === "/") {
    event.preventDefault();
    document.getElementById("search").focus();
  } else if (event.key === "n") {
    event.preventDefault();
    newTask();
  }
});

// The access token lives in memory only: a fresh page asks for one with the session cookie.
session.resume().then((resumed) => {
  if (resumed) enterApp();
  else renderSignIn();
});
