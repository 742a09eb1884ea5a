"""Audit: a project's trace, the JSONL and Beancount exports, table exports and source statements."""
