"""The rulebook (pollutants, zones, ratios, matching keys), its versions, and which lot may serve which project."""
