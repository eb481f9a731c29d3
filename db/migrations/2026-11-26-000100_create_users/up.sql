-- Rail Gun's accounts. Passwords are argon2 hashes (PHC strings), never plaintext: the CHECK
-- refuses anything else, so a bug that stores a raw password fails loudly.

CREATE FUNCTION set_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stored lowercased by the app, so the unique constraint is case-insensitive in effect.
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_lowercase CHECK (email = lower(email) AND position('@' IN email) > 1),
    CONSTRAINT users_display_name_length CHECK (length(display_name) BETWEEN 1 AND 100),
    CONSTRAINT users_password_hash_argon2 CHECK (password_hash ~ '^\$argon2(id|i|d)\$')
);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
