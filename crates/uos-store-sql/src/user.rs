//! Users: insert, lookups, optimistic update, filtered keyset list and the count.

use crate::rows::{self, overfetch, uuid_cursor, USER_COLS};
use crate::sql::{json, query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_domain::{Email, User, UserId};
use uos_store::{LoginUser, Page, PageRequest, Result, UserFilter, UserReads, UserRepo};

/// Upper bound of a prefix range: no valid string starting with the prefix sorts at or above
/// `prefix + U+10FFFF` under binary (UTF-8 byte / code point) order, so
/// `email >= prefix and email < prefix || U+10FFFF` is "starts with" and uses the email index.
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    let mut upper = String::with_capacity(prefix.len() + 4);
    upper.push_str(prefix);
    upper.push(char::MAX);
    upper
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> UserReads for SqlTx<D, M> {
    async fn get_user(&mut self, id: UserId) -> Result<Option<User>> {
        let sql = format!("select {USER_COLS} from user_account where user_id = $1");
        let row = query::<D>(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn get_user_by_email(&mut self, email: &Email) -> Result<Option<User>> {
        let sql = format!("select {USER_COLS} from user_account where email = $1");
        let row = query::<D>(&sql)
            .bind(email.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn get_login_user(&mut self, email: &Email) -> Result<Option<LoginUser>> {
        let sql = format!(
            "select {USER_COLS}, exists(select 1 from user_totp t \
             where t.user_id = user_account.user_id and t.confirmed_at is not null) \
             as second_factor from user_account where email = $1"
        );
        let Some(row) = query::<D>(&sql)
            .bind(email.as_str())
            .fetch_optional(self.conn())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(LoginUser {
            user: rows::user(&row)?,
            second_factor: rows::get(&row, "second_factor")?,
        }))
    }

    async fn list_users(&mut self, filter: &UserFilter, page: &PageRequest) -> Result<Page<User>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q =
            QueryBuilder::<D>::new(format!("select {USER_COLS} from user_account where true"));
        if let Some(status) = filter.status {
            q.push(" and status = ").push_bind(status.as_str());
        }
        if let Some(prefix) = &filter.email_prefix {
            // Emails are stored lower-case; a prefix typed in another case would match nothing.
            let prefix = prefix.to_lowercase();
            q.push(" and email >= ")
                .push_bind(prefix.clone())
                .push(" and email < ")
                .push_bind(prefix_upper_bound(&prefix));
        }
        if let Some(after) = after {
            q.push(" and user_id > ").push_bind(after);
        }
        q.push(" order by user_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let users = found.iter().map(rows::user).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(users, page.limit, |u| {
            u.id.to_string()
        }))
    }

    async fn count_users(&mut self) -> Result<i64> {
        let row = query::<D>("select count(*) as n from user_account")
            .fetch_one(self.conn())
            .await?;
        rows::get(&row, "n")
    }
}

#[async_trait]
impl<D: Dialect> UserRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_user(&mut self, user: &User) -> Result<()> {
        query::<D>(
            "insert into user_account (user_id, email, display_name, locale, timezone, status, \
             status_before_delete, platform_admin, password_hash, preferences, created_at, \
             updated_at, deleted_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(user.id.0)
        .bind(user.email.as_str())
        .bind(&user.display_name)
        .bind(&user.locale)
        .bind(&user.timezone)
        .bind(user.status.as_str())
        .bind(user.status_before_delete.map(|s| s.as_str()))
        .bind(user.platform_admin)
        .bind(&user.password_hash)
        .bind(json(&user.preferences)?)
        .bind(user.created_at)
        .bind(user.updated_at)
        .bind(user.deleted_at)
        .bind(user.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_user(&mut self, user: &User, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update user_account set email = $3, display_name = $4, locale = $5, timezone = $6, \
             status = $7, status_before_delete = $8, platform_admin = $9, password_hash = $10, \
             preferences = $11, updated_at = $12, deleted_at = $13, version = $14 \
             where user_id = $1 and version = $2",
        )
        .bind(user.id.0)
        .bind(expected_version)
        .bind(user.email.as_str())
        .bind(&user.display_name)
        .bind(&user.locale)
        .bind(&user.timezone)
        .bind(user.status.as_str())
        .bind(user.status_before_delete.map(|s| s.as_str()))
        .bind(user.platform_admin)
        .bind(&user.password_hash)
        .bind(json(&user.preferences)?)
        .bind(user.updated_at)
        .bind(user.deleted_at)
        .bind(user.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from user_account where user_id = $1",
            user.id.0,
        )
        .await
    }
}
