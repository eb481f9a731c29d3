-- API tokens are shown once, as `<prefix>.<secret>`. The prefix finds the row; the secret is
-- only kept as an argon2 hash, so a leaked table holds no usable token.

CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    CONSTRAINT api_tokens_prefix_format CHECK (prefix ~ '^rg_[0-9A-Za-z]{8,16}$'),
    CONSTRAINT api_tokens_token_hash_argon2 CHECK (token_hash ~ '^\$argon2(id|i|d)\$')
);
