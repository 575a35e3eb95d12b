"""Mail adapters: SMTP (aiosmtplib), the outbox directory (no server needed),
and the sender that delivers the queued messages."""
