//! Named leases: one replica at a time does a job, and another takes over once the lease has
//! expired.

use crate::sql::query;
use crate::tx::SqlTx;
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_store::{LeaseRepo, Result};

#[async_trait]
impl<D: Dialect> LeaseRepo for SqlTx<D> {
    async fn claim_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        // One statement: concurrent claimants of a free or expired lease serialise on its row,
        // and the second finds it held.
        let claimed = query::<D>(
            "insert into lease (name, holder, expires_at) values ($1, $2, $3) \
             on conflict (name) do update set holder = excluded.holder, \
             expires_at = excluded.expires_at \
             where lease.holder = excluded.holder or lease.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(claimed.rows_affected() == 1)
    }
}
