CREATE INDEX CONCURRENTLY IF NOT EXISTS api_tokens_user_id_idx ON api_tokens (user_id);
