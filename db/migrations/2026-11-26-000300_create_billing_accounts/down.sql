ALTER TABLE users DROP COLUMN billing_ref;
DROP TABLE billing_accounts;
