-- Email: whether each address is verified, the one-time tokens that links
-- carry (verification, password reset, email change: hashes only), and the
-- outbox of mail queued in the same transaction as the change that caused it.

ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

CREATE TABLE one_time_tokens (
    token_hash varchar(64) PRIMARY KEY,  -- SHA-256 (hex) of the token, never the token
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      varchar(254) NOT NULL,  -- the address the link went to
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX one_time_tokens_user_usable ON one_time_tokens (user_id) WHERE used_at IS NULL;

CREATE TABLE mail_outbox (
    id              uuid PRIMARY KEY,  -- also the Message-ID's left part
    recipient       varchar(254) NOT NULL,
    subject         text NOT NULL,
    text_body       text NOT NULL,  -- emptied once sent: the links in it carry tokens
    html_body       text NOT NULL,
    link            text,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    last_error      text,
    receipt         text
);
-- What the sender claims: queued messages that are due.
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'queued';
-- What `engage mail outbox` lists: newest first.
CREATE INDEX mail_outbox_newest ON mail_outbox (created_at DESC);
