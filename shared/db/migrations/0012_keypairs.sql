-- Key pairs (nova's os-keypairs): a user's, not a project's, as in nova; a name is unique per
-- user. Only the public half is kept: a generated private key is given to the client once, in
-- the create response, and never stored.
CREATE TABLE key_pairs (
    user_id     text NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    fingerprint text NOT NULL,
    public_key  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);
