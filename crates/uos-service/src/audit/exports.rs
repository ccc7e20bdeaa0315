//! Audit exports: a request records a pending job (and its audit event); a background worker
//! on some replica claims it and streams the slice of the trail, page by page, into the object
//! store as NDJSON, hashing as it goes, and ends the file with a manifest line. Neither the
//! writer nor a download ever holds the whole file: memory stays flat whatever its size.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use uos_audit::{AuditAction, Manifest};
use uos_authz::{Action, ResourceKind};
use uos_domain::OrgSlug;
use uos_objects::{ByteStream, ObjectStore, ObjectWriter};
use uos_store::{AuditExport, AuditFilter, ExportOutcome, ExportStatus, PageRequest};
use uuid::Uuid;

use super::whole_trail;
use crate::kernel::uow::UnitOfWork;
use crate::views::AuditExportView;
use crate::{Ctx, Done, Result, ServiceError, Services};

/// Events read from the store and written per round: one page, one progress update.
const PAGE: u32 = 1000;
/// A running job whose row has not moved for this long lost its replica and is taken over.
/// Every page moves it, so only a replica that died or hung for minutes loses its job.
const STALE: Duration = Duration::from_secs(300);
/// How often a replica looks for jobs requested elsewhere (its own requests wake it at once).
const POLL: Duration = Duration::from_secs(2);
/// Pause after a round that failed to reach the store before trying again.
const BACKOFF: Duration = Duration::from_secs(5);
/// Candidates read per search; claims that lose to another replica move on to the next.
const CANDIDATES: u32 = 8;

/// This replica's export worker: where files go, and a bell for jobs requested here.
#[derive(Debug)]
pub(crate) struct ExportState {
    pub(crate) objects: Arc<dyn ObjectStore>,
    due: tokio::sync::Notify,
}

impl ExportState {
    pub(crate) fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            due: tokio::sync::Notify::new(),
        }
    }
}

/// Why an attempt stopped short of a file.
enum Stop {
    /// The job was taken over by another attempt (this one stalled): it records nothing more.
    LostClaim,
    /// The export failed; `error` is what its status says, `events` how far it got.
    Failed { events: i64, error: String },
}

impl Services {
    /// Requests an export of `org`'s trail (needs `audit:read` there) or, without `org`, of
    /// the whole trail (platform auditors only), exactly as [`Services::list_audit`] decides
    /// who may read what. The job starts pending; `since` is inclusive, `until` exclusive.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_audit_export(
        &self,
        ctx: &Ctx,
        org: Option<&OrgSlug>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Done<AuditExportView>> {
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(ServiceError::field(
                    "until",
                    "invalid",
                    "must be later than since",
                ));
            }
        }
        let inner = &*self.inner;
        let (org_id, cap, mut uow) = match org {
            // Refused before a write transaction is opened: no org is to be read.
            None => {
                let cap = inner.authorize(ctx, Action::AuditRead, whole_trail())?;
                (None, cap, UnitOfWork::begin(inner, ctx).await?)
            }
            Some(slug) => {
                let mut uow = UnitOfWork::begin(inner, ctx).await?;
                let (org, cap) = inner
                    .org_access(uow.tx(), ctx, slug, Action::AuditRead, |res| {
                        res.kind = ResourceKind::Audit
                    })
                    .await?;
                (Some(org.id), cap, uow)
            }
        };
        let now = uos_domain::now();
        let job = AuditExport {
            id: uos_domain::new_id(),
            org_id,
            requested_by: requester(ctx),
            since,
            until,
            status: ExportStatus::Pending,
            events_written: 0,
            sha256: None,
            error: None,
            object_key: None,
            created_at: now,
            updated_at: now,
        };
        uow.tx().insert_audit_export(&job).await?;
        uow.record(
            AuditAction::AuditExported,
            org_id,
            job.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({
                "org_id": org_id.map(|o| o.0),
                "since": since,
                "until": until,
            }),
        )
        .await?;
        let done = Done {
            status: 202,
            body: Some(AuditExportView::from(&job)),
            version: None,
        };
        uow.commit(&cap, &done).await?;
        inner.exports.due.notify_one();
        Ok(done)
    }

    /// An export's status, to whoever may read what it holds; anyone else gets `NotFound`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_audit_export(&self, ctx: &Ctx, id: Uuid) -> Result<AuditExportView> {
        Ok(AuditExportView::from(&self.readable_export(ctx, id).await?))
    }

    /// The file of a done export as a byte stream (`Conflict("export_not_ready")` before).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn download_audit_export(&self, ctx: &Ctx, id: Uuid) -> Result<ByteStream> {
        let job = self.readable_export(ctx, id).await?;
        let key = match (job.status, &job.object_key) {
            (ExportStatus::Done, Some(key)) => key,
            _ => {
                return Err(ServiceError::conflict(
                    "export_not_ready",
                    format!(
                        "the export is {}; its file can be downloaded once it is done",
                        job.status.as_str()
                    ),
                ))
            }
        };
        self.inner
            .exports
            .objects
            .get(key)
            .await
            .map_err(|e| match e {
                uos_objects::ObjectError::NotFound(_) => {
                    ServiceError::Internal(format!("export {id}: its file is missing: {e}"))
                }
                other => ServiceError::Unavailable(format!("export {id}: {other}")),
            })
    }

    /// The export, if the caller may read the trail it holds. Whoever may not learns nothing
    /// of it, not even that it exists: `NotFound`, like an id that names nothing.
    async fn readable_export(&self, ctx: &Ctx, id: Uuid) -> Result<AuditExport> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let job = r
            .get_audit_export(id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let allowed = match job.org_id {
            Some(org_id) => {
                let org = r.get_org(org_id).await?.ok_or(ServiceError::NotFound)?;
                inner
                    .authorize_in_org(&mut *r, ctx, &org, Action::AuditRead, |res| {
                        res.kind = ResourceKind::Audit
                    })
                    .await
                    .map(drop)
            }
            None => inner
                .authorize(ctx, Action::AuditRead, whole_trail())
                .map(drop),
        };
        match allowed {
            Ok(()) => Ok(job),
            Err(ServiceError::Forbidden { .. }) => Err(ServiceError::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Runs export jobs until the process ends: whenever this replica takes a request, every
    /// [`POLL`] otherwise, one job at a time (so a replica's memory holds at most one page).
    pub(crate) fn spawn_export_worker(&self) {
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                match svc.run_next_export().await {
                    Ok(true) => continue,
                    Ok(false) => {
                        let _ = tokio::time::timeout(POLL, svc.inner.exports.due.notified()).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "audit exports not run; retrying");
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            }
        });
    }

    /// Claims one claimable export (pending, or running on a replica that went quiet) and
    /// runs it to its end. False when there was none to claim. Public so that a benchmark can
    /// drive one export in the foreground and measure it.
    pub async fn run_next_export(&self) -> Result<bool> {
        let inner = &*self.inner;
        let now = uos_domain::now();
        let stale_before = now - chrono::Duration::from_std(STALE).unwrap_or_default();
        let candidates = {
            let mut r = inner.store.read().await?;
            r.claimable_audit_exports(stale_before, CANDIDATES).await?
        };
        for id in candidates {
            let claim = Uuid::now_v7();
            let mut tx = inner.store.begin().await?;
            let won = tx.claim_audit_export(id, claim, stale_before, now).await?;
            tx.commit().await?;
            if !won {
                continue;
            }
            let job = {
                let mut r = inner.store.read().await?;
                r.get_audit_export(id)
                    .await?
                    .ok_or(ServiceError::NotFound)?
            };
            self.run_export(&job, claim).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// One attempt at `job` under `claim`: the file, then its outcome.
    async fn run_export(&self, job: &AuditExport, claim: Uuid) -> Result<()> {
        let inner = &*self.inner;
        // Per attempt, so an attempt that was taken over never overwrites its successor's file.
        let key = format!("audit-exports/{}/{claim}.ndjson", job.id);
        tracing::info!(export = %job.id, store = %inner.exports.objects.describe(), "audit export started");
        let outcome = match self.write_export(job, claim, &key).await {
            Ok((events, sha256)) => ExportOutcome::Done {
                events_written: events,
                sha256,
                object_key: key,
            },
            Err(Stop::LostClaim) => {
                tracing::warn!(export = %job.id, "audit export taken over by another attempt");
                return Ok(());
            }
            Err(Stop::Failed { events, error }) => ExportOutcome::Failed {
                events_written: events,
                error,
            },
        };
        let mut tx = inner.store.begin().await?;
        let recorded = tx
            .finish_audit_export(job.id, claim, &outcome, uos_domain::now())
            .await?;
        tx.commit().await?;
        match (&outcome, recorded) {
            (_, false) => {
                tracing::warn!(export = %job.id, "audit export taken over before it was recorded")
            }
            (ExportOutcome::Done { events_written, .. }, true) => {
                tracing::info!(export = %job.id, events = events_written, "audit export done")
            }
            (ExportOutcome::Failed { error, .. }, true) => {
                tracing::warn!(export = %job.id, %error, "audit export failed")
            }
        }
        Ok(())
    }

    /// Writes the file under `key`: finished when every event and the manifest are in, else
    /// aborted. Returns how many events it holds and the SHA-256 of all of it.
    async fn write_export(
        &self,
        job: &AuditExport,
        claim: Uuid,
        key: &str,
    ) -> std::result::Result<(i64, String), Stop> {
        let objects = &self.inner.exports.objects;
        let mut writer = objects.writer(key).await.map_err(|e| Stop::Failed {
            events: 0,
            error: format!("object store: {e}"),
        })?;
        match self.fill_export(job, claim, writer.as_mut()).await {
            Ok(written) => {
                writer.finish().await.map_err(|e| Stop::Failed {
                    events: written.0,
                    error: format!("object store: {e}"),
                })?;
                Ok(written)
            }
            Err(stop) => {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(export = %job.id, error = %e, "a partial export was not removed");
                }
                Err(stop)
            }
        }
    }

    /// Streams the events of `job` into `writer`, a page at a time, then the manifest line.
    async fn fill_export(
        &self,
        job: &AuditExport,
        claim: Uuid,
        writer: &mut dyn ObjectWriter,
    ) -> std::result::Result<(i64, String), Stop> {
        let inner = &*self.inner;
        let mut events = 0i64;
        let store_failed = |events: i64, e: ServiceError| {
            // The cause (which may name tables or hosts) goes to the log; the status says
            // which side failed.
            tracing::warn!(export = %job.id, error = %e, "audit export: store unavailable");
            Stop::Failed {
                events,
                error: "the audit store was unavailable; request the export again".into(),
            }
        };
        // Read before the first page: every head this checkpoint saw was committed before
        // it was issued, so the pages below reach it (with `until`, the last checkpoint issued
        // by then, whose heads occurred before `until`).
        //
        // Then every chain's head: the export holds each chain up to where it stood now. Events
        // are listed in the order they were stored, and on PostgreSQL an event can commit after
        // a later-stored one of another chain; a page read before it committed would miss it
        // while a later page holds its successor, a gap in its chain. Everything up to these
        // heads had committed before the first page is read, so nothing up to them is missed.
        let (checkpoint, heads) = {
            let at = job.until.unwrap_or_else(uos_domain::now);
            let (row, heads) = async {
                let mut r = inner.store.read().await?;
                let row = r.latest_checkpoint_before(at).await?;
                Ok::<_, ServiceError>((row, r.audit_heads().await?))
            }
            .await
            .map_err(|e| store_failed(0, e))?;
            let heads: HashMap<String, i64> = heads.into_iter().map(|h| (h.chain, h.seq)).collect();
            (
                row.and_then(|row| serde_json::from_value(row.payload).ok()),
                heads,
            )
        };
        let filter = AuditFilter {
            org: job.org_id,
            since: job.since,
            until: job.until,
            ..AuditFilter::default()
        };
        let mut page = PageRequest::first(PAGE);
        let mut manifest = Manifest::default();
        let mut hash = Sha256::new();
        loop {
            let rows = async {
                let mut r = inner.store.read().await?;
                Ok::<_, ServiceError>(r.list_audit(&filter, &page).await?)
            }
            .await
            .map_err(|e| store_failed(events, e))?;
            // One page's lines, written and hashed as one chunk: at most PAGE events in memory.
            let mut chunk = Vec::with_capacity(rows.items.len() * 768);
            let mut in_page = 0i64;
            let (marks, stored): (Vec<_>, Vec<_>) = rows
                .items
                .into_iter()
                .filter(|row| heads.get(&row.chain).is_some_and(|&head| row.seq <= head))
                .map(|row| ((row.chain, row.seq), row.payload))
                .unzip();
            // Each line shows what its personal fields decrypt to now, or that they are erased.
            let payloads = inner
                .serve_events(stored)
                .await
                .map_err(|e| store_failed(events, e))?;
            for ((chain, seq), payload) in marks.iter().zip(&payloads) {
                in_page += 1;
                chunk.extend_from_slice(payload.get().as_bytes());
                chunk.push(b'\n');
                manifest.note(chain, *seq);
            }
            hash.update(&chunk);
            writer
                .write(Bytes::from(chunk))
                .await
                .map_err(|e| Stop::Failed {
                    events,
                    error: format!("object store: {e}"),
                })?;
            events += in_page;
            let moved = async {
                let mut tx = inner.store.begin().await?;
                let moved = tx
                    .audit_export_progress(job.id, claim, events, uos_domain::now())
                    .await?;
                tx.commit().await?;
                Ok::<_, ServiceError>(moved)
            }
            .await
            .map_err(|e| store_failed(events, e))?;
            if !moved {
                return Err(Stop::LostClaim);
            }
            match rows.next {
                Some(cursor) => page.after = Some(cursor),
                None => break,
            }
        }
        // A checkpoint names every org's chain and its length, and its signature covers them
        // all, so it cannot be cut down to one org: only exports of the whole trail (platform
        // auditors) carry it.
        if job.org_id.is_none() {
            manifest.checkpoints = checkpoint.into_iter().collect();
        }
        manifest.keys = self.audit_public_keys();
        let mut line = manifest.to_line().into_bytes();
        line.push(b'\n');
        hash.update(&line);
        writer
            .write(Bytes::from(line))
            .await
            .map_err(|e| Stop::Failed {
                events,
                error: format!("object store: {e}"),
            })?;
        Ok((events, hex::encode(hash.finalize())))
    }
}

/// Who asked, as the audit event's actor id names them.
fn requester(ctx: &Ctx) -> String {
    ctx.actor_id()
}
