-- Console tokens (nova's consoleauth): the token of a console URL is the one credential the
-- gateways' console proxy asks for, so it is kept only as its SHA-256 (a copy of the table
-- opens no console), with where the guest's display listens and until when it may be used
-- (STRATUS_CONSOLE_TOKEN_TTL_S). Rows past expires_at are removed as new tokens are made.
CREATE TABLE console_tokens (
    token_sha256  bytea PRIMARY KEY,
    server_id     uuid NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    console_type  text NOT NULL,
    host          text NOT NULL,
    port          integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX console_tokens_expires_at ON console_tokens (expires_at);
CREATE INDEX console_tokens_server_id ON console_tokens (server_id);
