"""The HTML report and the message catalogue (English and Chinese)."""
