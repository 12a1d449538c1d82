"""Per-user and system-wide task statistics, read from task-service's aggregates."""
