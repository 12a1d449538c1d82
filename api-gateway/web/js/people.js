// The user directory as the app needs it: names for ids, and a search for the assignee picker.

export class People {
  constructor(session) {
    this.session = session;
    this.byId = new Map();
    this.pending = new Map();
    this.listeners = new Set();
  }

  remember(user) {
    if (user && user.id) this.byId.set(user.id, user);
  }

  name(id) {
    const user = this.byId.get(id);
    if (!user) return `User ${id}`;
    return user.full_name || user.username;
  }

  /** Resolve unknown ids (a few requests at most, deduplicated); `onchange` runs after. */
  async ensure(ids) {
    const missing = [...new Set(ids)].filter(
      (id) => id && !this.byId.has(id) && !this.pending.has(id),
    );
    if (!missing.length) return;
    await Promise.all(
      missing.map((id) => {
        const request = this.session
          .get(`/users/${id}`)
          .then((user) => this.remember(user))
          .catch(() => this.byId.set(id, { id, username: `user ${id}`, full_name: null }))
          .finally(() => this.pending.delete(id));
        this.pending.set(id, request);
        return request;
      }),
    );
    for (const listener of this.listeners) listener();
  }

  async search(q) {
    const params = new URLSearchParams({ limit: "8" });
    if (q) params.set("q", q);
    const users = await this.session.get(`/users/?${params}`);
    for (const user of users) this.remember(user);
    return users;
  }

  onchange(listener) {
    this.listeners.add(listener);
  }
}
