"""Administrative commands: `python -m user_service.cli make-admin <username-or-email>`.

This is how the first administrator is made: register normally, then promote the account
from a shell that can reach the database (same settings/environment as the service).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from taskflow_kit.db import create_pool, in_transaction

from user_service.config import Settings
from user_service.passwords import PasswordHasher
from user_service.users.errors import UserNotFound
from user_service.users.events import make_outbox
from user_service.users.service import UserService


async def make_admin(settings: Settings, identifier: str) -> int:
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection, in_transaction(connection):
            # No relay in a one-off command: the services' relays publish the event (woken by
            # the commit's NOTIFY).
            service = UserService.for_connection(
                connection,
                outbox=make_outbox(),
                hasher=PasswordHasher(rounds=settings.bcrypt_rounds),
            )
            try:
                user = await service.make_admin(identifier)
            except UserNotFound:
                print(f"No user with username or email {identifier!r}", file=sys.stderr)
                return 1
        print(f"{user.username} (id {user.id}) is now an active administrator")
        return 0
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m user_service.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    promote = commands.add_parser("make-admin", help="grant administrator rights to a user")
    promote.add_argument("identifier", help="the user's username or email")
    args = parser.parse_args(argv)
    return asyncio.run(make_admin(settings or Settings(), args.identifier))


if __name__ == "__main__":
    sys.exit(main())
