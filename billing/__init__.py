"""Credits: ledger, wallet, pricing, metering and payment providers. Imports no transport."""
