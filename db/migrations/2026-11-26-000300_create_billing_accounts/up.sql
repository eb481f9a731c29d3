-- Billing knows an account by its billing_ref, never by a user id: what goes to the payment
-- provider (and its exports, webhooks and support tools) cannot be joined back to a user
-- without our database. The link points from users to billing, not the other way.

CREATE TABLE billing_accounts (
    billing_ref TEXT PRIMARY KEY DEFAULT ('bill_' || replace(gen_random_uuid()::text, '-', '')),
    plan TEXT NOT NULL DEFAULT 'free',
    -- The payment provider's id for this account (e.g. a Stripe customer), once there is one.
    provider_customer_id TEXT UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT billing_accounts_billing_ref_format CHECK (billing_ref ~ '^bill_[0-9a-f]{32}$'),
    CONSTRAINT billing_accounts_plan_known CHECK (plan IN ('free', 'pro', 'team'))
);

CREATE TRIGGER billing_accounts_set_updated_at BEFORE UPDATE ON billing_accounts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE users
    ADD COLUMN billing_ref TEXT UNIQUE REFERENCES billing_accounts (billing_ref) ON DELETE SET NULL;
