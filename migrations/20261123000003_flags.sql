-- Route flags of the gateway (strangler-fig router) and the audit log of every change.
-- Owned by the gateway. `version` grows by one on every change, so a process holding a
-- snapshot can tell a newer row from an older one whatever order they reach it in.
CREATE SCHEMA IF NOT EXISTS flags;

CREATE TABLE flags.flags (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,31}$'),
    enabled         boolean NOT NULL DEFAULT true,
    rollout_percent smallint NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- 0 means "as seeded": nobody has changed the flag yet.
    version         bigint NOT NULL DEFAULT 0 CHECK (version >= 0)
);

-- Who changed which flag, from what to what, why and when. Rows are only ever added.
CREATE TABLE flags.audit (
    id      bigserial PRIMARY KEY,
    flag    text NOT NULL REFERENCES flags.flags (name),
    actor   text NOT NULL,
    action  text NOT NULL,
    old     jsonb,
    new     jsonb NOT NULL,
    reason  text,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_flag_idx ON flags.audit (flag, id);

CREATE FUNCTION flags.audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'flags.audit is append-only';
END
$$;

CREATE TRIGGER audit_is_append_only
    BEFORE UPDATE OR DELETE ON flags.audit
    FOR EACH ROW EXECUTE FUNCTION flags.audit_is_append_only();

-- The three route groups: on, with every new cart and order still created by legacy.
INSERT INTO flags.flags (name) VALUES ('cart'), ('orders'), ('payments');
