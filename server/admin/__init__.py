"""Admin and moderation services (transport-free but for Socket.IO emits): audit log, users view,
notices, moderation queue, live stats. Routes are in `rest/admin/`."""
