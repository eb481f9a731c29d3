DROP INDEX CONCURRENTLY IF EXISTS api_tokens_user_id_idx;
