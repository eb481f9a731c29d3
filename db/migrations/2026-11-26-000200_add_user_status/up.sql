-- The guide's example migration (AddUserStatus), as SQL.
ALTER TABLE "users" ADD COLUMN "status" varchar(20) DEFAULT 'active';
CREATE INDEX "IDX_users_status" ON "users" ("status");
