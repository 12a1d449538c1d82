// The profile dialog: name and email, password change, account deletion.

import { ApiError } from "./api.js";
import { confirmDialog, h, hueClass, initials, modal, toast } from "./ui.js";

/** `ctx`: {session, me, onUpdated(user), onDeleted()} */
export function openProfile(ctx) {
  const me = ctx.me;

  const profileError = h("div", { class: "form-error", role: "alert", hidden: true });
  const fullName = h("input", { class: "input", id: "profile-name", autocomplete: "name", maxlength: 200, value: me.full_name || "" });
  const email = h("input", { class: "input", id: "profile-email", type: "email", autocomplete: "email", required: true, value: me.email });
  const username = h("input", { class: "input", id: "profile-username", autocomplete: "username", required: true, value: me.username, minlength: 3, maxlength: 50 });
  // A new email or username needs the current password (the server re-authenticates).
  const profilePassword = h("input", { class: "input", id: "profile-password", type: "password", autocomplete: "current-password" });
  const profilePasswordField = h(
    "div",
    { class: "field", hidden: true },
    h("label", { for: "profile-password" }, "Current password"),
    profilePassword,
    h("span", { class: "hint" }, "Needed to change your email or username. A new email signs you out everywhere else."),
  );
  const identityChanged = () => email.value.trim() !== me.email || username.value.trim() !== me.username;
  for (const input of [email, username]) {
    input.addEventListener("input", () => {
      profilePasswordField.hidden = !identityChanged();
    });
  }
  const saveProfile = h("button", { class: "button button-primary", type: "submit" }, "Save profile");

  const passwordError = h("div", { class: "form-error", role: "alert", hidden: true });
  const current = h("input", { class: "input", id: "profile-current-password", type: "password", autocomplete: "current-password", required: true });
  const next = h("input", { class: "input", id: "profile-new-password", type: "password", autocomplete: "new-password", required: true, minlength: 8, maxlength: 128 });
  const savePassword = h("button", { class: "button", type: "submit" }, "Change password");

  function show(box, message) {
    box.textContent = message || "";
    box.hidden = !message;
  }

  const profileForm = h(
    "form",
    {
      class: "profile-section",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        show(profileError, "");
        const changes = {};
        const name = fullName.value.trim();
        if (name !== (me.full_name || "")) changes.full_name = name || null;
        if (email.value.trim() !== me.email) changes.email = email.value.trim();
        if (username.value.trim() !== me.username) changes.username = username.value.trim();
        if (!Object.keys(changes).length) {
          toast("Nothing to save", { kind: "info" });
          return;
        }
        if (changes.email !== undefined || changes.username !== undefined) {
          if (!profilePassword.value) {
            profilePasswordField.hidden = false;
            show(profileError, "Enter your current password to change your email or username.");
            profilePassword.focus();
            return;
          }
          changes.current_password = profilePassword.value;
        }
        saveProfile.disabled = true;
        try {
          const { data } = await ctx.session.request("PATCH", "/users/me", { body: changes });
          Object.assign(me, data);
          ctx.onUpdated(data);
          profilePassword.value = "";
          profilePasswordField.hidden = true;
          toast("Profile saved", { kind: "success" });
        } catch (error) {
          show(profileError, error.message);
        } finally {
          saveProfile.disabled = false;
        }
      },
    },
    h("h3", { class: "section-title" }, "Profile"),
    profileError,
    field("profile-name", "Full name", fullName),
    h("div", { class: "field-row" }, field("profile-username", "Username", username), field("profile-email", "Email", email)),
    profilePasswordField,
    h("div", { class: "section-actions" }, saveProfile),
  );

  const passwordForm = h(
    "form",
    {
      class: "profile-section",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        show(passwordError, "");
        if (next.value.length < 8) {
          show(passwordError, "The new password needs at least 8 characters.");
          next.focus();
          return;
        }
        savePassword.disabled = true;
        try {
          await ctx.session.changePassword(me.username, current.value, next.value);
          current.value = "";
          next.value = "";
          toast("Password changed. Other devices have been signed out.", { kind: "success" });
        } catch (error) {
          show(passwordError, error instanceof ApiError ? error.message : String(error));
        } finally {
          savePassword.disabled = false;
        }
      },
    },
    h("h3", { class: "section-title" }, "Password"),
    passwordError,
    // Lets password managers know whose password this is.
    h("input", { type: "text", class: "visually-hidden", autocomplete: "username", value: me.username, readonly: true, tabindex: "-1", "aria-hidden": "true" }),
    h("div", { class: "field-row" }, field("profile-current-password", "Current password", current), field("profile-new-password", "New password", next)),
    h("p", { class: "hint" }, "At least 8 characters. Changing it signs you out everywhere else."),
    h("div", { class: "section-actions" }, savePassword),
  );

  const danger = h(
    "section",
    { class: "profile-section danger-zone" },
    h("h3", { class: "section-title" }, "Delete account"),
    h("p", { class: "hint" }, "Your account and the tasks you own are deleted for good, tasks assigned to you are unassigned, and you are signed out everywhere."),
    h(
      "div",
      { class: "section-actions" },
      h(
        "button",
        {
          class: "button button-danger",
          type: "button",
          onclick: async () => {
            const password = await confirmDialog({
              title: "Delete your account?",
              message: "Your account and every task you own will be deleted. This cannot be undone.",
              confirmLabel: "Delete my account",
              danger: true,
              requireText: me.username,
              requirePassword: true,
            });
            if (!password) return;
            try {
              await ctx.session.request("DELETE", "/users/me", { body: { current_password: password } });
              dialog.close("deleted");
              ctx.onDeleted();
            } catch (error) {
              toast(error.message, { kind: "error" });
            }
          },
        },
        "Delete account…",
      ),
    ),
  );

  const dialog = modal({
    title: "Your account",
    className: "modal-profile",
    content: h(
      "div",
      { class: "modal-body" },
      h(
        "div",
        { class: "profile-head" },
        h("span", { class: ["avatar", "avatar-lg", hueClass(me.id)], "aria-hidden": "true" }, initials(me.full_name || me.username)),
        h("div", {}, h("div", { class: "profile-name" }, me.full_name || me.username), h("div", { class: "muted" }, `@${me.username} · ${me.email}`)),
      ),
      profileForm,
      passwordForm,
      danger,
    ),
  });
  fullName.focus();
}

function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}
