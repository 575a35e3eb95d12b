"""Mail adapters: SMTP (aiosmtplib), the outbox directory (no server needed), a fake,
and the sender that delivers the queued messages."""
