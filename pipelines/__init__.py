"""The CRM's handlers: one module per queue of config/queues.toml."""
