"""The realtime server: process entry, app wiring and Socket.IO transport."""
