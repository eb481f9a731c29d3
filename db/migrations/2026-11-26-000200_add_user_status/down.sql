DROP INDEX "IDX_users_status";
ALTER TABLE "users" DROP COLUMN "status";
