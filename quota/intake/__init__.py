"""Intake: reading CSV/XLSX files and their cells, tallies (sources and lots) and project files."""
