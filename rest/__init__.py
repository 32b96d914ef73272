"""The REST sidecar under /api (wallet, purchases, webhooks, history, admin) and health routes."""
