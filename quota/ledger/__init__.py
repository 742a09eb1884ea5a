"""The ledger: posting and the hash chain, verification, the project register, drawing, the operations
(reserve, approve, release, cancel, revoke, expire), balances and idempotency."""
