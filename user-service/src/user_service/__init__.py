"""TaskFlow user-service: accounts, login, JWT access and refresh tokens."""
