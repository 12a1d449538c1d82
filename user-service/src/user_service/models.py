"""Every table of user-service, imported together (Alembic and tests need the full metadata)."""

from user_service.auth.models import RefreshToken
from user_service.database import Base
from user_service.users.events import OUTBOX
from user_service.users.models import User

__all__ = ["OUTBOX", "Base", "RefreshToken", "User"]
