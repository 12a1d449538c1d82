"""Bulk task data made by PostgreSQL itself (generate_series), for tests and benchmarks at size.

One INSERT ... SELECT writes `count` tasks for one owner, deterministic in the row number, with
the shape of a real account: 50 % todo, 20 % in progress, 30 % done; the four priorities in
turn; a third without a due date, the rest spread a year either side of now; creations spread
evenly over three years; tags with known frequencies; titles and descriptions from a small
vocabulary plus hex noise. The frequencies below are what the plan tests and the size
benchmark rely on (a common and a rare tag, a common and a rare search term).
"""

from __future__ import annotations

COMMON_TAG = "work"  # every 3rd task
RARE_TAG = "audit"  # every 1000th task
COMMON_TERM = "report"  # one title in 16
RARE_TERM = "zeppelin"  # one description in 1000
# Every `crowded_every`-th task (bulk_insert_parameters): one tag, rare for one owner and
# common for another.
CROWDED_TAG = "crowded"

_VERBS = "ARRAY['write','review','plan','fix','call','prepare','update','check']"
_NOUNS = (
    "ARRAY['report','budget','invoice','design','meeting','release','backlog','roadmap',"
    "'garden','dentist','car','taxes','slides','survey','contract','hiring']"
)

# :owner, :count, :assignee_base, :crowded_every are bound by the caller; `g` is the row number.
BULK_INSERT = f"""
INSERT INTO task (title, description, status, priority, due_date, tags, owner_id, assignee_id,
                  created_at, updated_at, completed_at, version)
SELECT
    initcap(({_VERBS})[1 + g % 8]) || ' ' || ({_NOUNS})[1 + (g / 8) % 16]
        || ' ' || substr(md5(g::text), 1, 6),
    CASE WHEN g % 4 = 0 THEN NULL
         ELSE 'Notes ' || substr(md5((g * 7)::text), 1, 12)
              || CASE WHEN g % 1000 = 7 THEN ' zeppelin' ELSE '' END
    END,
    s.status,
    (ARRAY['low','medium','high','urgent'])[1 + (g / 10) % 4],
    CASE WHEN g % 3 = 1 THEN NULL
         ELSE now() + make_interval(days => CAST((g::bigint * 7919) % 730 AS integer) - 365) END,
    array_remove(ARRAY[
        CASE WHEN g % 3 = 0 THEN 'work' END,
        CASE WHEN g % 5 = 0 THEN 'home' END,
        CASE WHEN g % 1000 = 3 THEN 'audit' END,
        CASE WHEN g % CAST(:crowded_every AS integer) = 0 THEN 'crowded' END
    ], NULL),
    CAST(:owner AS bigint),
    CASE WHEN g % 50 = 0 THEN CAST(:assignee_base AS bigint) + g % 20 END,
    c.created_at,
    c.created_at + interval '1 hour',
    CASE WHEN s.status = 'done' THEN c.created_at + interval '1 day' END,
    1
FROM generate_series(1, CAST(:count AS integer)) AS g
CROSS JOIN LATERAL (
    SELECT CASE WHEN g % 10 < 5 THEN 'todo' WHEN g % 10 < 7 THEN 'in_progress' ELSE 'done' END
        AS status
) AS s
CROSS JOIN LATERAL (
    SELECT now() - interval '3 years' * (1 - g::float8 / CAST(:count AS integer)) AS created_at
) AS c
"""


def bulk_insert_parameters(
    *, owner: int, count: int, assignee_base: int, crowded_every: int = 1000
) -> dict[str, int]:
    """Bind values for `BULK_INSERT`: `count` tasks of `owner`, every 50th assigned to one of
    twenty users from `assignee_base`, every `crowded_every`-th tagged CROWDED_TAG."""
    return {
        "owner": owner,
        "count": count,
        "assignee_base": assignee_base,
        "crowded_every": crowded_every,
    }
