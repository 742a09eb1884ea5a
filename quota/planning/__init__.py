"""Planning: the allocation MILP (the only importer of pulp and highspy), its decomposition, scenarios,
stored plans and the outlook."""
