// Small DOM helpers: element builder, icons, toasts, confirmation dialog, formatting.

const SVG_NS = "http://www.w3.org/2000/svg";

/** `h("button", {class: "x", onclick}, "Label", child)` → an element. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "value") {
      element.value = value;
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key in element && typeof value !== "string") {
      element[key] = value;
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Replace an element's children (null, false and undefined are skipped). */
export function fill(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
  return parent;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) element.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const ICONS = {
  plus: "M12 5v14M5 12h14",
  search: "M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14zM20 20l-3.5-3.5",
  board: "M4 5h4v14H4zM10 5h4v9h-4zM16 5h4v6h-4z",
  list: "M9 6h11M9 12h11M9 18h11M4.5 6h.01M4.5 12h.01M4.5 18h.01",
  check: "M5 12.5l4.5 4.5L19 7.5",
  clock: "M12 7v5l3 2M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z",
  tag: "M3 12V4h8l9 9-8 8-9-9zM7.5 7.5h.01",
  user: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21a8 8 0 0 1 16 0",
  users: "M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM2 21a7 7 0 0 1 14 0M16 3.5a4 4 0 0 1 0 7.5M18 14.5a7 7 0 0 1 4 6.5",
  lock: "M6 11h12v10H6zM8 11V7a4 4 0 0 1 8 0v4",
  trash: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
  x: "M6 6l12 12M18 6L6 18",
  link: "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1",
  alert: "M12 9v4M12 17h.01M10.3 4.3L2.6 18a2 2 0 0 0 1.7 3h15.4a2 2 0 0 0 1.7-3L13.7 4.3a2 2 0 0 0-3.4 0z",
  chevronLeft: "M15 6l-6 6 6 6",
  chevronRight: "M9 6l6 6-6 6",
  logout: "M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10",
  filter: "M4 5h16l-6 8v6l-4-2v-4z",
  sort: "M7 4v16M4 7l3-3 3 3M17 20V4M14 17l3 3 3-3",
  chart: "M4 20V10M10 20V4M16 20v-7M22 20H2",
  undo: "M9 14L4 9l5-5M4 9h10a6 6 0 0 1 0 12h-3",
  calendar: "M4 6h16v14H4zM4 10h16M8 3v4M16 3v4",
  wifiOff: "M2 2l20 20M8.5 16.5a5 5 0 0 1 7 0M5 12.5a10 10 0 0 1 5-2.5M19 12.5a10 10 0 0 0-2-1.5M12 20h.01",
  flag: "M5 21V4h11l-1.5 4L16 12H5",
  blocked: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM5.6 5.6l12.8 12.8",
};

export function icon(name, { size = 18, label } = {}) {
  const path = svg("path", { d: ICONS[name] || "" });
  const attrs = {
    width: size,
    height: size,
    viewBox: "0 0 24 24",
    fill: "none",
    stroke: "currentColor",
    "stroke-width": 1.8,
    "stroke-linecap": "round",
    "stroke-linejoin": "round",
    class: "icon",
  };
  if (label) {
    attrs.role = "img";
    attrs["aria-label"] = label;
  } else {
    attrs["aria-hidden"] = "true";
    attrs.focusable = "false";
  }
  return svg("svg", attrs, label ? svg("title", {}, label) : null, path);
}

// ---- toasts ---------------------------------------------------------------------------------

/**
 * A message at the bottom of the screen. `action: {label, run}` adds a button; `onexpire`
 * runs when the toast goes away without its action being used.
 */
export function toast(message, { kind = "info", timeout = 5000, action, onexpire } = {}) {
  const region = document.getElementById("toasts");
  let done = false;
  const close = (expired) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    item.classList.add("leaving");
    setTimeout(() => item.remove(), 180);
    if (expired && onexpire) onexpire();
  };
  const item = h(
    "div",
    { class: ["toast", `toast-${kind}`], role: kind === "error" ? "alert" : "status" },
    icon(kind === "error" ? "alert" : kind === "success" ? "check" : "clock", { size: 16 }),
    h("span", { class: "toast-text" }, message),
    action
      ? h(
          "button",
          {
            class: "toast-action",
            type: "button",
            onclick: () => {
              done = true;
              clearTimeout(timer);
              item.remove();
              action.run();
            },
          },
          action.label,
        )
      : null,
    h(
      "button",
      { class: "toast-close", type: "button", "aria-label": "Dismiss", onclick: () => close(true) },
      icon("x", { size: 14 }),
    ),
  );
  region.append(item);
  const timer = setTimeout(() => close(true), timeout);
  return { close: () => close(true), element: item };
}

// ---- dialogs --------------------------------------------------------------------------------

/** A modal built on <dialog>: focus is trapped, Escape closes it, focus returns after. */
export function modal({ title, className, content, onclose, labelledBy }) {
  const opener = document.activeElement;
  const titleId = labelledBy || `dialog-title-${Math.random().toString(36).slice(2, 8)}`;
  const dialog = h(
    "dialog",
    { class: ["modal", className], "aria-labelledby": titleId },
    h(
      "div",
      { class: "modal-head" },
      h("h2", { id: titleId, class: "modal-title" }, title),
      h(
        "button",
        {
          class: "icon-button",
          type: "button",
          "aria-label": "Close",
          onclick: () => dialog.close("cancel"),
        },
        icon("x"),
      ),
    ),
    content,
  );
  // A re-render may replace the opener while the dialog is open: find its successor.
  const row = opener && opener.closest ? opener.closest("[data-task-id]") : null;
  const taskId = row ? row.dataset.taskId : null;
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onclose) onclose(dialog.returnValue);
    let target = opener;
    if ((!target || !target.isConnected) && taskId) {
      target = document.querySelector(
        `[data-task-id="${taskId}"] .card-title, [data-task-id="${taskId}"] .row-title`,
      );
    }
    if (target && target.isConnected && typeof target.focus === "function") target.focus();
  });
  // A click on the backdrop (the dialog box itself, outside its content) closes it.
  dialog.addEventListener("mousedown", (event) => {
    if (event.target === dialog) dialog.close("cancel");
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Ask before something that cannot be taken back. Resolves true when confirmed. */
/**
 * A confirmation dialog. Resolves false when cancelled, else true, or (with `requirePassword`)
 * the password the person typed, for a change the server re-authenticates.
 */
export function confirmDialog({ title, message, confirmLabel = "Confirm", danger, requireText, requirePassword }) {
  return new Promise((resolve) => {
    let confirmed = false;
    const ready = () => {
      confirmButton.disabled =
        (typed && typed.value.trim() !== requireText) || (password && !password.value);
    };
    const typed = requireText
      ? h("input", {
          class: "input",
          id: "confirm-text",
          autocomplete: "off",
          spellcheck: false,
          oninput: ready,
        })
      : null;
    const password = requirePassword
      ? h("input", {
          class: "input",
          id: "confirm-password",
          type: "password",
          autocomplete: "current-password",
          oninput: ready,
        })
      : null;
    const confirmButton = h(
      "button",
      { class: ["button", danger ? "button-danger" : "button-primary"], type: "submit" },
      confirmLabel,
    );
    if (requireText || requirePassword) confirmButton.disabled = true;
    const form = h(
      "form",
      {
        class: "modal-body",
        method: "dialog",
        onsubmit: (event) => {
          event.preventDefault();
          if (confirmButton.disabled) return;
          confirmed = true;
          dialog.close("confirm");
        },
      },
      h("p", { class: "confirm-message" }, message),
      typed
        ? h(
            "div",
            { class: "field" },
            h("label", { for: "confirm-text" }, `Type “${requireText}” to confirm`),
            typed,
          )
        : null,
      password
        ? h(
            "div",
            { class: "field" },
            h("label", { for: "confirm-password" }, "Your password"),
            password,
          )
        : null,
      h(
        "div",
        { class: "modal-actions" },
        h(
          "button",
          { class: "button", type: "button", onclick: () => dialog.close("cancel") },
          "Cancel",
        ),
        confirmButton,
      ),
    );
    const dialog = modal({
      title,
      className: "modal-small",
      content: form,
      onclose: () => resolve(confirmed && password ? password.value : confirmed),
    });
    (typed || confirmButton).focus();
  });
}

// ---- formatting -----------------------------------------------------------------------------

const DAY = 86_400_000;

export function startOfDay(date) {
  const copy = new Date(date);
  copy.setHours(0, 0, 0, 0);
  return copy;
}

/** "Overdue · 2 days", "Due today", "Due tomorrow", "Due Fri", "Due 12 Mar". */
export function dueLabel(iso, done) {
  if (!iso) return null;
  const due = new Date(iso);
  const days = Math.round((startOfDay(due) - startOfDay(new Date())) / DAY);
  const overdue = !done && due.getTime() < Date.now();
  let text;
  if (days === 0) text = overdue ? "Overdue · today" : "Due today";
  else if (days === 1) text = "Due tomorrow";
  else if (days === -1) text = overdue ? "Overdue · yesterday" : "Due yesterday";
  else if (days < 0) text = overdue ? `Overdue · ${-days} days` : `Due ${shortDate(due)}`;
  else if (days < 7) text = `Due ${due.toLocaleDateString(undefined, { weekday: "short" })}`;
  else text = `Due ${shortDate(due)}`;
  const soon = !done && !overdue && days <= 2;
  return { text, overdue, soon, title: due.toLocaleString() };
}

export function shortDate(date) {
  const value = new Date(date);
  const sameYear = value.getFullYear() === new Date().getFullYear();
  return value.toLocaleDateString(undefined, {
    day: "numeric",
    month: "short",
    year: sameYear ? undefined : "numeric",
  });
}

export function relativeTime(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  if (days < 30) return `${days} d ago`;
  return shortDate(iso);
}

/** A `datetime-local` input value (local time) from an ISO string, and back. */
export function toLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

export function fromLocalInput(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

export function initials(name) {
  const parts = String(name || "?")
    .trim()
    .split(/[\s._-]+/)
    .filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : (parts[0] || "?").slice(0, 2);
  return letters.toUpperCase();
}

/** One of eight calm hues, always the same for the same user. */
export function hueClass(id) {
  return `hue-${Math.abs(Number(id) || 0) % 8}`;
}

export function debounce(fn, wait) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}
