"""TaskFlow stats-service: task statistics from task-service's aggregates, cached in Redis."""

__version__ = "0.1.0"
