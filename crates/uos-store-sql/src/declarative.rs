//! The reconciler's state: declared orgs with their status, the objects it created, and the
//! global switches.

use crate::rows::{get, overfetch};
use crate::sql::{query, QueryBuilder, Row};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::OrgId;
use uos_store::{
    DeclarativeControl, DeclarativeReads, DeclarativeRepo, DeclaredAttempt, DeclaredKind,
    DeclaredOrg, DriftCheck, Page, PageRequest, Pause, Result, StoreError,
};

const COLS: &str = "slug, org_id, file, last_applied_revision, last_applied_at, \
     applied_text, attempt_revision, attempt_at, attempt_result, attempt_error, \
     drift_checked_at, drift_differences, paused_at, pause_reason, paused_by";

/// The pause in columns `paused_at`, `pause_reason` and `paused_by`.
fn pause<D: Dialect>(r: &Row<D>) -> Result<Option<Pause>> {
    let at: Option<DateTime<Utc>> = get(r, "paused_at")?;
    Ok(match at {
        Some(at) => Some(Pause {
            at,
            reason: get::<_, Option<String>>(r, "pause_reason")?.unwrap_or_default(),
            by: get::<_, Option<String>>(r, "paused_by")?.unwrap_or_default(),
        }),
        None => None,
    })
}

fn declared<D: Dialect>(r: &Row<D>) -> Result<DeclaredOrg> {
    let attempt = match get::<_, Option<String>>(r, "attempt_revision")? {
        Some(revision) => Some(DeclaredAttempt {
            revision,
            at: get::<_, Option<DateTime<Utc>>>(r, "attempt_at")?.ok_or_else(|| {
                StoreError::Corrupt("declared_org: attempt without a time".into())
            })?,
            result: get::<_, Option<String>>(r, "attempt_result")?.unwrap_or_default(),
            error: get(r, "attempt_error")?,
        }),
        None => None,
    };
    let drift = match get::<_, Option<DateTime<Utc>>>(r, "drift_checked_at")? {
        Some(checked_at) => Some(DriftCheck {
            checked_at,
            differences: get::<_, Option<String>>(r, "drift_differences")?
                .unwrap_or_else(|| "[]".into()),
        }),
        None => None,
    };
    Ok(DeclaredOrg {
        slug: get(r, "slug")?,
        org_id: get::<_, Option<uuid::Uuid>>(r, "org_id")?.map(OrgId),
        file: get(r, "file")?,
        last_applied_revision: get(r, "last_applied_revision")?,
        last_applied_at: get(r, "last_applied_at")?,
        applied_text: get(r, "applied_text")?,
        last_attempt: attempt,
        drift,
        paused: pause(r)?,
    })
}

/// Confines `tx` to `org` with the dialect's `confine` expression (see
/// [`Dialect::CONFINE_TO_ORG`]) and reads the org's declared-config row in the same statement,
/// kept for the `declared_org_of` that follows (see [`SqlTx::confined_declared`]). The row is
/// visible whichever the statement evaluates first: the scope before is every org, after it
/// this one.
pub(crate) async fn confine_reading_declared<D: Dialect>(
    tx: &mut SqlTx<D>,
    confine: &str,
    org: OrgId,
) -> Result<()> {
    let sql = format!(
        "select {confine} as confined, {COLS} from (select 1 as one) as confining \
         left join declared_org on declared_org.org_id = $2"
    );
    let row = query::<D>(&sql)
        .bind(org.0.to_string())
        .bind(org.0)
        .fetch_one(tx.conn())
        .await?;
    let found = get::<_, Option<String>>(&row, "slug")?.is_some();
    let declared = found.then(|| declared(&row)).transpose()?;
    tx.confined_declared = Some((org, declared));
    Ok(())
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> DeclarativeReads for SqlTx<D, M> {
    async fn get_declared_org(&mut self, slug: &str) -> Result<Option<DeclaredOrg>> {
        let sql = format!("select {COLS} from declared_org where slug = $1");
        let row = query::<D>(&sql)
            .bind(slug)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(declared).transpose()
    }

    async fn declared_org_of(&mut self, org: OrgId) -> Result<Option<DeclaredOrg>> {
        if let Some((confined, declared)) = self.confined_declared.take() {
            if confined == org {
                return Ok(declared);
            }
        }
        let sql = format!("select {COLS} from declared_org where org_id = $1");
        let row = query::<D>(&sql)
            .bind(org.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(declared).transpose()
    }

    async fn list_declared_orgs(&mut self, page: &PageRequest) -> Result<Page<DeclaredOrg>> {
        let mut q = QueryBuilder::<D>::new(format!("select {COLS} from declared_org where true"));
        if let Some(after) = &page.after {
            q.push(" and slug > ").push_bind(after.clone());
        }
        q.push(" order by slug limit ")
            .push_bind(overfetch(page.limit));
        let items = q
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(declared)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |d| d.slug.clone()))
    }

    async fn declarative_control(&mut self) -> Result<DeclarativeControl> {
        let row = query::<D>(
            "select revision, paused_at, pause_reason, paused_by, sync_requested_at \
             from declarative_control where id = 'global'",
        )
        .fetch_optional(self.conn())
        .await?;
        Ok(match row {
            Some(r) => DeclarativeControl {
                revision: get(&r, "revision")?,
                paused: pause(&r)?,
                sync_requested_at: get(&r, "sync_requested_at")?,
            },
            None => DeclarativeControl::default(),
        })
    }

    async fn declared_objects(&mut self, org: OrgId) -> Result<Vec<(DeclaredKind, String)>> {
        let rows = query::<D>(
            "select kind, name from declared_object where org_id = $1 order by kind, name",
        )
        .bind(org.0)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = get(r, "kind")?;
                let kind = DeclaredKind::parse(&kind).ok_or_else(|| {
                    StoreError::Corrupt(format!("declared_object: unknown kind {kind}"))
                })?;
                Ok((kind, get(r, "name")?))
            })
            .collect()
    }
}

#[async_trait]
impl<D: Dialect> DeclarativeRepo for SqlTx<D> {
    async fn note_declared_org(
        &mut self,
        slug: &str,
        org_id: Option<OrgId>,
        file: &str,
    ) -> Result<()> {
        query::<D>(
            "insert into declared_org (slug, org_id, file) values ($1, $2, $3) \
             on conflict (slug) do update set org_id = coalesce(excluded.org_id, \
             declared_org.org_id), file = excluded.file",
        )
        .bind(slug)
        .bind(org_id.map(|o| o.0))
        .bind(file)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn record_seen_revision(&mut self, revision: &str) -> Result<()> {
        query::<D>(
            "insert into declarative_control (id, revision) values ('global', $1) \
             on conflict (id) do update set revision = excluded.revision",
        )
        .bind(revision)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn record_declared_attempt(
        &mut self,
        slug: &str,
        attempt: &DeclaredAttempt,
        applied_text: Option<&str>,
    ) -> Result<()> {
        const ATTEMPT: &str = "update declared_org set attempt_revision = $1, attempt_at = $2, \
             attempt_result = $3, attempt_error = $4";
        // Placeholders in order of first use: SQLite numbers them that way.
        let sql = match applied_text {
            Some(_) => format!(
                "{ATTEMPT}, last_applied_revision = $1, last_applied_at = $2, applied_text = $5, \
                 drift_checked_at = $2, drift_differences = '[]' where slug = $6"
            ),
            None => format!("{ATTEMPT} where slug = $5"),
        };
        let mut q = query::<D>(&sql)
            .bind(attempt.revision.as_str())
            .bind(attempt.at)
            .bind(attempt.result.as_str())
            .bind(attempt.error.as_deref());
        if let Some(text) = applied_text {
            q = q.bind(text);
        }
        q = q.bind(slug);
        q.execute(self.conn()).await?;
        Ok(())
    }

    async fn record_drift(&mut self, slug: &str, drift: &DriftCheck) -> Result<()> {
        query::<D>(
            "update declared_org set drift_checked_at = $1, drift_differences = $2 \
             where slug = $3",
        )
        .bind(drift.checked_at)
        .bind(drift.differences.as_str())
        .bind(slug)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn forget_declared_org(&mut self, slug: &str) -> Result<()> {
        query::<D>("delete from declared_org where slug = $1")
            .bind(slug)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn set_declared_pause(&mut self, slug: &str, pause: Option<&Pause>) -> Result<bool> {
        let done = query::<D>(
            "update declared_org set paused_at = $1, pause_reason = $2, paused_by = $3 \
             where slug = $4",
        )
        .bind(pause.map(|p| p.at))
        .bind(pause.map(|p| p.reason.as_str()))
        .bind(pause.map(|p| p.by.as_str()))
        .bind(slug)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_global_pause(&mut self, pause: Option<&Pause>) -> Result<()> {
        query::<D>(
            "insert into declarative_control (id, paused_at, pause_reason, paused_by) \
             values ('global', $1, $2, $3) on conflict (id) do update set \
             paused_at = excluded.paused_at, pause_reason = excluded.pause_reason, \
             paused_by = excluded.paused_by",
        )
        .bind(pause.map(|p| p.at))
        .bind(pause.map(|p| p.reason.as_str()))
        .bind(pause.map(|p| p.by.as_str()))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn request_declarative_sync(&mut self, at: DateTime<Utc>) -> Result<()> {
        query::<D>(
            "insert into declarative_control (id, sync_requested_at) values ('global', $1) \
             on conflict (id) do update set sync_requested_at = excluded.sync_requested_at",
        )
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn add_declared_object(
        &mut self,
        org: OrgId,
        kind: DeclaredKind,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        query::<D>(
            "insert into declared_object (org_id, kind, name, created_at) values ($1, $2, $3, $4) \
             on conflict (org_id, kind, name) do nothing",
        )
        .bind(org.0)
        .bind(kind.as_str())
        .bind(name)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn remove_declared_object(
        &mut self,
        org: OrgId,
        kind: DeclaredKind,
        name: &str,
    ) -> Result<()> {
        query::<D>("delete from declared_object where org_id = $1 and kind = $2 and name = $3")
            .bind(org.0)
            .bind(kind.as_str())
            .bind(name)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
