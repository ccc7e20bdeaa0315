//! Credentials around a user: the TOTP enrolment and its recovery codes, password history,
//! password resets (with their approval queue) and linked upstream identities.

use crate::rows::{self, EXTERNAL_IDENTITY_COLS, PASSWORD_RESET_COLS, TOTP_COLS};
use crate::sql::{query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::UserId;
use uos_store::{
    CredentialReads, CredentialRepo, ExternalIdentity, PasswordReset, Result, TotpEnrolment,
};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> CredentialReads for SqlTx<D, M> {
    async fn get_totp(&mut self, user: UserId) -> Result<Option<TotpEnrolment>> {
        let sql = format!("select {TOTP_COLS} from user_totp where user_id = $1");
        let row = query::<D>(&sql)
            .bind(user.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::totp).transpose()
    }

    async fn count_unused_recovery_codes(&mut self, user: UserId) -> Result<i64> {
        let row = query::<D>(
            "select count(*) as n from user_recovery_code where user_id = $1 and used_at is null",
        )
        .bind(user.0)
        .fetch_one(self.conn())
        .await?;
        rows::get(&row, "n")
    }

    async fn password_history(&mut self, user: UserId, limit: u32) -> Result<Vec<String>> {
        // The hash breaks ties between entries of one instant, so which of them the limit
        // cuts off is the same on every backend.
        let found = query::<D>(
            "select password_hash from password_history where user_id = $1 \
             order by created_at desc, password_hash desc limit $2",
        )
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        found
            .iter()
            .map(|r| rows::get(r, "password_hash"))
            .collect()
    }

    async fn get_password_reset(&mut self, id: uuid::Uuid) -> Result<Option<PasswordReset>> {
        let sql = format!("select {PASSWORD_RESET_COLS} from password_reset where reset_id = $1");
        let row = query::<D>(&sql)
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::password_reset).transpose()
    }

    async fn get_password_reset_by_token(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<PasswordReset>> {
        let sql = format!("select {PASSWORD_RESET_COLS} from password_reset where token_hash = $1");
        let row = query::<D>(&sql)
            .bind(token_hash)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::password_reset).transpose()
    }

    async fn get_external_identity(
        &mut self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<ExternalIdentity>> {
        let sql = format!(
            "select {EXTERNAL_IDENTITY_COLS} from external_identity \
             where issuer = $1 and subject = $2"
        );
        let row = query::<D>(&sql)
            .bind(issuer)
            .bind(subject)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::external_identity).transpose()
    }
}

#[async_trait]
impl<D: Dialect> CredentialRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn put_totp(&mut self, e: &TotpEnrolment) -> Result<()> {
        // A new enrolment starts over: every column, confirmation and last step included,
        // comes from `e`.
        query::<D>(
            "insert into user_totp (user_id, secret_enc, created_at, confirmed_at, \
             last_used_step) values ($1, $2, $3, $4, $5) \
             on conflict (user_id) do update set secret_enc = excluded.secret_enc, \
             created_at = excluded.created_at, confirmed_at = excluded.confirmed_at, \
             last_used_step = excluded.last_used_step",
        )
        .bind(e.user_id.0)
        .bind(&e.secret_enc)
        .bind(e.created_at)
        .bind(e.confirmed_at)
        .bind(e.last_used_step)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn confirm_totp(&mut self, user: UserId, at: DateTime<Utc>) -> Result<bool> {
        // The first confirmation time is the one that counts.
        let done = query::<D>(
            "update user_totp set confirmed_at = $2 where user_id = $1 and confirmed_at is null",
        )
        .bind(user.0)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn use_totp_step(&mut self, user: UserId, step: i64) -> Result<bool> {
        // Check and move in one statement: write transactions run one after the other on the
        // single writer connection, so of two logins with one code the second finds the step
        // already taken.
        let done = query::<D>(
            "update user_totp set last_used_step = $2 \
             where user_id = $1 and last_used_step < $2",
        )
        .bind(user.0)
        .bind(step)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_totp(&mut self, user: UserId) -> Result<bool> {
        // Recovery codes stand in for the second factor; without one they must not open the
        // account by themselves.
        query::<D>("delete from user_recovery_code where user_id = $1")
            .bind(user.0)
            .execute(self.conn())
            .await?;
        let done = query::<D>("delete from user_totp where user_id = $1")
            .bind(user.0)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn replace_recovery_codes(
        &mut self,
        user: UserId,
        hashes: &[String],
        at: DateTime<Utc>,
    ) -> Result<()> {
        // Unused old codes are dropped too: issuing a new set revokes the old one.
        query::<D>("delete from user_recovery_code where user_id = $1")
            .bind(user.0)
            .execute(self.conn())
            .await?;
        if hashes.is_empty() {
            return Ok(());
        }
        let mut q = QueryBuilder::<D>::new(
            "insert into user_recovery_code (user_id, code_hash, created_at, used_at) values ",
        );
        for (i, hash) in hashes.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" })
                .push_bind(user.0)
                .push(", ")
                .push_bind(hash)
                .push(", ")
                .push_bind(at)
                .push(", null)");
        }
        q.execute(self.conn()).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn use_recovery_code(
        &mut self,
        user: UserId,
        hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        // One conditional update, as for refresh tokens: a code works once even when two
        // logins present it together.
        let done = query::<D>(
            "update user_recovery_code set used_at = $3 \
             where user_id = $1 and code_hash = $2 and used_at is null",
        )
        .bind(user.0)
        .bind(hash)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn push_password_history(
        &mut self,
        user: UserId,
        phc: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        query::<D>(
            "insert into password_history (user_id, password_hash, created_at) \
             values ($1, $2, $3)",
        )
        .bind(user.0)
        .bind(phc)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn insert_password_reset(&mut self, r: &PasswordReset) -> Result<()> {
        query::<D>(
            "insert into password_reset (reset_id, user_id, token_hash, created_at, expires_at, \
             used_at, requires_approval, approved_by, approved_at, requested_ip) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(r.id)
        .bind(r.user_id.0)
        .bind(&r.token_hash)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.used_at)
        .bind(r.requires_approval)
        .bind(r.approved_by.map(|u| u.0))
        .bind(r.approved_at)
        .bind(&r.requested_ip)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn approve_password_reset(
        &mut self,
        id: uuid::Uuid,
        approver: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        // Conditional, so two admins approving at once issue one token, not two. A reset that
        // never needed approval already has its mailed token, which this must not replace.
        let done = query::<D>(
            "update password_reset set approved_by = $2, approved_at = $5, token_hash = $3, \
             expires_at = $4 \
             where reset_id = $1 and requires_approval and approved_by is null \
             and used_at is null",
        )
        .bind(id)
        .bind(approver.0)
        .bind(token_hash)
        .bind(expires_at)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn use_password_reset(&mut self, token_hash: &str, at: DateTime<Utc>) -> Result<bool> {
        // One conditional update, as for refresh tokens: a reset link works once.
        let done = query::<D>(
            "update password_reset set used_at = $2 where token_hash = $1 and used_at is null",
        )
        .bind(token_hash)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn insert_external_identity(&mut self, x: &ExternalIdentity) -> Result<()> {
        query::<D>(
            "insert into external_identity (issuer, subject, user_id, email, created_at) \
             values ($1, $2, $3, $4, $5)",
        )
        .bind(&x.issuer)
        .bind(&x.subject)
        .bind(x.user_id.0)
        .bind(&x.email)
        .bind(x.created_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
