// Projects: boards a team shares. The create / rename dialog and the members dialog (add a
// person from the directory with a role, remove, leave).

import { ApiError } from "./api.js";
import { avatar } from "./task-dialog.js";
import { confirmDialog, debounce, fill, h, icon, modal, toast } from "./ui.js";

export const ROLE_LABELS = { owner: "Owner", admin: "Admin", member: "Member" };

export function canManage(project) {
  return Boolean(project) && (project.role === "owner" || project.role === "admin");
}

/**
 * Create a project, or rename `project` (owner or admin; If-Match guards a concurrent rename).
 * `ctx`: {session, onSaved(project)}
 */
export function openProjectForm(ctx, project = null) {
  const editing = Boolean(project);
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  const name = h("input", { class: "input", id: "project-name", required: true, maxlength: 100, autocomplete: "off", placeholder: "e.g. Spring launch", value: editing ? project.name : "" });
  const description = h("textarea", { class: "input", id: "project-description", rows: 2, maxlength: 10000, placeholder: "What is this board for? (optional)" });
  description.value = editing ? project.description || "" : "";
  const submit = h("button", { class: "button button-primary", type: "submit" }, editing ? "Save" : "Create project");
  const form = h(
    "form",
    {
      class: "modal-body",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        if (!name.value.trim()) {
          error.textContent = "Give the project a name.";
          error.hidden = false;
          name.focus();
          return;
        }
        const body = { name: name.value.trim(), description: description.value.trim() || null };
        submit.disabled = true;
        try {
          const { data } = editing
            ? await ctx.session.request("PATCH", `/projects/${project.id}`, { body, headers: { "If-Match": `W/"${project.version}"` } })
            : await ctx.session.request("POST", "/projects/", { body });
          dialog.close("saved");
          toast(editing ? `Saved “${data.name}”` : `Created “${data.name}”`, { kind: "success" });
          ctx.onSaved(data);
        } catch (problem) {
          error.textContent =
            problem instanceof ApiError && problem.status === 412
              ? "Someone renamed this project meanwhile. Close this dialog and try again."
              : problem.message;
          error.hidden = false;
        } finally {
          submit.disabled = false;
        }
      },
    },
    error,
    h("div", { class: "field" }, h("label", { for: "project-name" }, "Name"), name),
    h("div", { class: "field" }, h("label", { for: "project-description" }, "Description", h("span", { class: "optional" }, " (optional)")), description),
    editing ? null : h("p", { class: "hint" }, "You will be its owner. Add people once it exists: everyone on a project sees and edits its tasks."),
    h("div", { class: "modal-actions" }, h("button", { class: "button", type: "button", onclick: () => dialog.close() }, "Cancel"), submit),
  );
  const dialog = modal({ title: editing ? "Rename project" : "New project", className: "modal-small", content: form });
  name.focus();
}

/**
 * The members of `project`: everyone sees the list; owner and admins add and remove; anyone
 * but the owner may leave. `ctx`: {session, people, me, onChanged(), onLeft(project)}
 */
export function openMembersDialog(ctx, project) {
  const manage = canManage(project);
  const list = h("ul", { class: "member-list", id: "member-list", "aria-label": "Members" }, h("li", { class: "loading-row" }, h("span", { class: "spinner" }), "Loading members…"));
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  let members = [];

  function show(message) {
    error.textContent = message || "";
    error.hidden = !message;
  }

  async function load() {
    try {
      members = (await ctx.session.get(`/projects/${project.id}/members`)).members;
      await ctx.people.ensure(members.map((m) => m.user_id));
      render();
    } catch (problem) {
      show(problem.message);
    }
  }

  function render() {
    fill(
      list,
      members.map((member) => {
        const person = ctx.people.byId.get(member.user_id) || { id: member.user_id, username: member.username || `user ${member.user_id}` };
        const me = member.user_id === ctx.me.id;
        const removable = member.role !== "owner" && (me || manage);
        return h(
          "li",
          { class: "member", dataset: { userId: String(member.user_id) } },
          avatar(person),
          h("span", { class: "member-name" }, person.full_name || person.username, me ? h("span", { class: "muted" }, " (you)") : null),
          h("span", { class: ["role-badge", `role-${member.role}`] }, ROLE_LABELS[member.role] || member.role),
          removable
            ? h("button", { type: "button", class: "button button-ghost button-small member-remove", "aria-label": me ? "Leave project" : `Remove ${person.full_name || person.username}`, onclick: () => remove(member, person, me) }, me ? "Leave" : "Remove")
            : null,
        );
      }),
    );
  }

  async function remove(member, person, me) {
    const sure = await confirmDialog({
      title: me ? "Leave this project?" : `Remove ${person.full_name || person.username}?`,
      message: me
        ? `You will no longer see “${project.name}” or its tasks. Tasks assigned to you there will be unassigned.`
        : `${person.full_name || person.username} will lose “${project.name}” and its tasks at once; tasks assigned to them there will be unassigned.`,
      confirmLabel: me ? "Leave project" : "Remove",
      danger: true,
    });
    if (!sure) return;
    try {
      await ctx.session.request("DELETE", `/projects/${project.id}/members/${member.user_id}`);
      if (me) {
        dialog.close();
        ctx.onLeft(project);
        return;
      }
      members = members.filter((m) => m.user_id !== member.user_id);
      render();
      ctx.onChanged();
    } catch (problem) {
      show(problem.message);
    }
  }

  // Adding: search the directory, pick a person and a role.
  const search = h("input", { class: "input", id: "member-search", type: "search", autocomplete: "off", placeholder: "Search people by name or email…", "aria-label": "Search people to add" });
  const role = h("select", { class: "select", id: "member-role", "aria-label": "Role" }, h("option", { value: "member" }, "Member"), h("option", { value: "admin" }, "Admin"));
  const results = h("ul", { class: "member-results", id: "member-results", role: "listbox", "aria-label": "People" });
  const lookup = debounce(async () => {
    try {
      const found = await ctx.people.search(search.value.trim());
      const taken = new Set(members.map((m) => m.user_id));
      const candidates = found.filter((u) => !taken.has(u.id) && u.is_active !== false);
      fill(
        results,
        candidates.length
          ? candidates.map((user) =>
              h(
                "li",
                {},
                h("button", { type: "button", class: "member-option", dataset: { userId: String(user.id) }, onclick: () => add(user) }, avatar(user), h("span", { class: "option-name" }, user.full_name || user.username), h("span", { class: "option-sub" }, `@${user.username}`)),
              ),
            )
          : h("li", { class: "muted small" }, search.value.trim() ? "Nobody else matches" : "Everyone you can find is already here"),
      );
    } catch (problem) {
      show(problem.message);
    }
  }, 200);
  search.addEventListener("input", lookup);
  search.addEventListener("focus", lookup);

  async function add(user) {
    show("");
    try {
      const { data } = await ctx.session.request("POST", `/projects/${project.id}/members`, { body: { user_id: user.id, role: role.value } });
      members = [...members, data];
      ctx.people.remember(user);
      render();
      fill(results);
      search.value = "";
      toast(`Added ${user.full_name || user.username}`, { kind: "success", timeout: 2500 });
      ctx.onChanged();
    } catch (problem) {
      show(problem.message);
    }
  }

  const adder = manage
    ? h("section", { class: "member-add", "aria-label": "Add a person" }, h("h3", { class: "section-title" }, "Add a person"), h("div", { class: "member-add-row" }, search, role), results)
    : h("p", { class: "hint" }, "Only the project's owner and admins add or remove people.");
  const dialog = modal({
    title: `Members of “${project.name}”`,
    className: "modal-members",
    content: h("div", { class: "modal-body" }, error, list, adder, h("div", { class: "modal-actions" }, h("button", { class: "button", type: "button", onclick: () => dialog.close() }, "Done"))),
  });
  load();
  if (manage) search.focus();
  return dialog;
}

/** The ids of a project's members (for the assignee picker), cached briefly per project. */
export function memberDirectory(session) {
  const cache = new Map();
  const lookup = async (projectId) => {
    const hit = cache.get(projectId);
    if (hit && Date.now() - hit.at < 10_000) return hit.ids;
    const { members } = await session.get(`/projects/${projectId}/members`);
    const ids = new Set(members.map((m) => m.user_id));
    cache.set(projectId, { ids, at: Date.now() });
    return ids;
  };
  // A membership change (ours, or an event about someone else's) makes the cached ids stale.
  lookup.forget = (projectId) => cache.delete(projectId);
  return lookup;
}

