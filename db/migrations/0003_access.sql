-- Access: API keys (only a hash of each secret is stored) and Idempotency-Key records.

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),  -- public key id
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash   BYTEA NOT NULL CHECK (length(secret_hash) = 32),  -- SHA-256 of the secret
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at);

-- The first answer to a create sent with an Idempotency-Key, replayed to its retries. Neither
-- the key nor the answer is stored in clear: rows are found by a hash of the key, and the answer
-- (which for POST /users holds an API key) is sealed with a key derived from the Idempotency-Key,
-- so only a client that still holds it can read it back.
CREATE TABLE idempotency_keys (
    owner         TEXT NOT NULL,    -- who sent it: 'user:ID', 'admin:admin-N' or 'addr:IP'
    key_hash      BYTEA NOT NULL,   -- SHA-256 of the operation and the Idempotency-Key
    request_hash  BYTEA NOT NULL,   -- SHA-256 of the canonical request body
    status        SMALLINT NOT NULL,
    sealed_answer BYTEA NOT NULL,   -- AES-GCM of {"body", "headers"}
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key_hash)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
