"""Storage: the engine and transactions, the driver, the schema, migrations and database roles."""
