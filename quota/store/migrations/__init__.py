"""Alembic migrations of the quota schema (`quota db upgrade`)."""
