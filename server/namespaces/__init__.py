"""Socket.IO namespaces: thin handlers over services (one class per namespace)."""
