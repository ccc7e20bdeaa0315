//! One reconcile pass: read the config repo at its newest commit, refuse the commit if its
//! signature is required and missing or wrong, then for each org file record it, plan it
//! against the store and apply the plan through the service (or, when that revision is
//! applied already, compare the live org with it: drift). Each org is on its own: an invalid
//! file or a refused change stops that org only.
//!
//! Fetching and parsing block (git2, disk), so they run on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use uos_service::{Ctx, DeclaredSource, DriftDifference, NotApplied, Services};
use uos_store::DeclaredOrg;

use crate::git::{GitError, GitSource, Mirror};
use crate::metrics::Metrics;
use crate::plan::plan_org;
use crate::repo::{read_dir_files, read_file, slug_of, ORGS_DIR};
use crate::signature::{AllowedSigners, SignatureError};
use crate::steps::{difference, steps};

/// Where the org files come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A plain directory, read as it is; its revision is a hash of the files, and it has no
    /// commits to verify.
    Directory(PathBuf),
    /// A Git repository (a local path, `file://`, `https://` or `ssh://`), fetched into a bare
    /// mirror at `mirror`.
    Git { source: GitSource, mirror: PathBuf },
}

impl Source {
    /// The source `repo` names: an existing directory that is not a Git repository is read
    /// as it is; anything else is fetched from.
    pub fn for_repo(repo: GitSource, mirror: PathBuf) -> Self {
        let path = Path::new(&repo.url);
        if path.is_dir() && git2::Repository::open(path).is_err() {
            Source::Directory(path.to_owned())
        } else {
            Source::Git {
                source: repo,
                mirror,
            }
        }
    }
}

/// The repository at one revision: its org files, read but not parsed (a pass parses only
/// the files that changed, or all of them when it checks drift).
#[derive(Debug)]
pub struct Snapshot {
    /// The commit id, or `dir:<sha256 of the files>` for a directory.
    pub revision: String,
    /// (name inside `orgs/`, contents), in name order.
    pub files: Vec<(String, Vec<u8>)>,
    /// Why the commit may not be applied (its signature), when it may not.
    pub rejected: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("fetching the config repo: {0}")]
    Git(#[from] GitError),
    #[error("reading the config repo: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Service(#[from] uos_service::ServiceError),
    #[error("reading the store: {0}")]
    Store(#[from] uos_store::StoreError),
    #[error("the fetch thread failed: {0}")]
    Join(String),
}

/// Read `source` at its newest revision, checking the commit against `signers` when given.
pub fn snapshot(source: &Source, signers: Option<&AllowedSigners>) -> Result<Snapshot, RunError> {
    match source {
        Source::Directory(dir) => {
            let files = read_dir_files(dir)?;
            let mut hash = Sha256::new();
            for (name, bytes) in &files {
                hash.update(name.as_bytes());
                hash.update([0]);
                hash.update(bytes);
                hash.update([0]);
            }
            let revision = format!("dir:{}", hex::encode(hash.finalize()));
            let rejected = signers.map(|_| {
                "signatures are required, and a plain directory has no signed commits".to_owned()
            });
            Ok(Snapshot {
                revision,
                files,
                rejected,
            })
        }
        Source::Git { source, mirror } => {
            let mirror = Mirror::open(mirror)?;
            let revision = mirror.fetch(source)?;
            let rejected = match signers {
                Some(signers) => {
                    let verdict = match mirror.commit_signature(&revision)? {
                        None => Err(SignatureError::Unsigned),
                        Some(c) => signers.verify(&c.signature, &c.signed),
                    };
                    verdict.err().map(|e| e.to_string())
                }
                None => None,
            };
            let mut files = mirror.org_files(&revision)?;
            files.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Snapshot {
                revision,
                files,
                rejected,
            })
        }
    }
}

/// What one pass did to one org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The revision was applied, with this many changes (0: the store already matched).
    Applied { changes: usize },
    /// Applied before and still matching.
    UpToDate,
    /// Applied before, and the live org differs in this many places; re-applied when the
    /// file sets `heal: true`.
    Drifted { differences: usize, healed: bool },
    /// Nothing applied: the org or the reconciler is paused.
    Paused,
    /// Nothing applied: the reason.
    Failed(String),
    /// Nothing applied: the commit's signature.
    Rejected(String),
}

/// One org's file and outcome in a pass.
#[derive(Clone, Debug)]
pub struct OrgOutcome {
    pub slug: String,
    pub file: String,
    pub outcome: Outcome,
}

/// What a pass found and did.
#[derive(Clone, Debug)]
pub struct Pass {
    pub revision: String,
    pub orgs: Vec<OrgOutcome>,
}

/// The reconciler: a source, what it trusts, and the service it applies through.
#[derive(Clone, Debug)]
pub struct Engine {
    svc: Services,
    source: Source,
    signers: Option<AllowedSigners>,
    branch: String,
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(
        svc: Services,
        source: Source,
        signers: Option<AllowedSigners>,
        branch: String,
    ) -> Self {
        Self {
            svc,
            source,
            signers,
            branch,
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn services(&self) -> &Services {
        &self.svc
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The newest revision of the source, read on a blocking thread.
    pub async fn snapshot(&self) -> Result<Snapshot, RunError> {
        let (source, signers) = (self.source.clone(), self.signers.clone());
        tokio::task::spawn_blocking(move || snapshot(&source, signers.as_ref()))
            .await
            .map_err(|e| RunError::Join(e.to_string()))?
    }

    /// Fetch and reconcile every org. Orgs already applied at this revision are compared
    /// with the store only when `check_drift`.
    #[tracing::instrument(skip(self), fields(revision))]
    pub async fn reconcile(&self, check_drift: bool) -> Result<Pass, RunError> {
        let started = Instant::now();
        let snapshot = self.snapshot().await?;
        tracing::Span::current().record("revision", snapshot.revision.as_str());
        let pass = self.apply_snapshot(snapshot, check_drift).await;
        self.metrics
            .record_pass(started.elapsed(), pass.as_ref().ok());
        pass
    }

    /// Reconcile every org of `snapshot`. Its record of each declared org is read in one go,
    /// and an org whose file is as last applied costs nothing more unless drift is checked.
    pub async fn apply_snapshot(
        &self,
        snapshot: Snapshot,
        check_drift: bool,
    ) -> Result<Pass, RunError> {
        let revision = snapshot.revision;
        let ctx = Ctx::reconciler(DeclaredSource {
            revision: revision.clone(),
            file: String::new(),
        });
        self.svc.record_seen_revision(&ctx).await?;
        let (control, mut states) = self.svc.declared_states(&ctx).await?;
        if let Some(reason) = snapshot.rejected {
            return self
                .reject(&ctx, revision, &snapshot.files, &states, reason)
                .await;
        }
        // Only a commit that may apply can release an org.
        let declared: HashSet<&str> = snapshot.files.iter().map(|(n, _)| slug_of(n)).collect();
        let gone: Vec<String> = states
            .keys()
            .filter(|slug| !declared.contains(slug.as_str()))
            .cloned()
            .collect();
        self.svc.forget_declared(&ctx, &gone).await?;
        for slug in gone {
            tracing::info!(%slug, "no file declares the org any more: it is no longer managed");
        }
        let mut orgs = Vec::with_capacity(snapshot.files.len());
        for (name, bytes) in snapshot.files {
            let slug = slug_of(&name).to_owned();
            let state = states.remove(&slug);
            let ctx = Ctx::reconciler(DeclaredSource {
                revision: revision.clone(),
                file: format!("{ORGS_DIR}/{name}"),
            });
            let paused = control.paused.is_some();
            let outcome = self
                .org(&ctx, &slug, (&name, bytes), state, paused, check_drift)
                .await?;
            orgs.push(OrgOutcome {
                slug,
                file: format!("{ORGS_DIR}/{name}"),
                outcome,
            });
        }
        Ok(Pass { revision, orgs })
    }

    /// A commit refused for its signature: audited once, and shown on every org it declares.
    async fn reject(
        &self,
        ctx: &Ctx,
        revision: String,
        files: &[(String, Vec<u8>)],
        states: &HashMap<String, DeclaredOrg>,
        reason: String,
    ) -> Result<Pass, RunError> {
        self.svc
            .record_rejected_commit(ctx, &self.branch, &reason)
            .await?;
        let mut orgs = Vec::with_capacity(files.len());
        for (name, _) in files {
            let slug = slug_of(name);
            let file = format!("{ORGS_DIR}/{name}");
            let ctx = Ctx::reconciler(DeclaredSource {
                revision: revision.clone(),
                file: file.clone(),
            });
            if states.get(slug).is_none_or(|s| s.file != file) {
                self.svc.note_declared(&ctx, slug).await?;
            }
            self.svc
                .record_not_applied(&ctx, slug, NotApplied::Rejected, &reason)
                .await?;
            orgs.push(OrgOutcome {
                slug: slug.to_owned(),
                file,
                outcome: Outcome::Rejected(reason.clone()),
            });
        }
        tracing::warn!(%revision, %reason, "config commit rejected");
        Ok(Pass { revision, orgs })
    }

    #[tracing::instrument(skip_all, fields(file = %ctx.request_id, %slug))]
    async fn org(
        &self,
        ctx: &Ctx,
        slug: &str,
        (name, bytes): (&str, Vec<u8>),
        state: Option<DeclaredOrg>,
        globally_paused: bool,
        check_drift: bool,
    ) -> Result<Outcome, RunError> {
        let file = format!("{ORGS_DIR}/{name}");
        if state.as_ref().is_none_or(|s| s.file != file) {
            self.svc.note_declared(ctx, slug).await?;
        }
        if globally_paused || state.as_ref().is_some_and(|s| s.paused.is_some()) {
            return Ok(Outcome::Paused);
        }
        // As last applied, and that apply is the latest attempt: only drift can be new.
        let in_effect = state.as_ref().is_some_and(|s| {
            s.applied_text.as_deref().map(str::as_bytes) == Some(bytes.as_slice())
                && s.last_attempt
                    .as_ref()
                    .is_some_and(|a| a.result == "applied")
        });
        if in_effect && !check_drift {
            return Ok(Outcome::UpToDate);
        }
        let entry = read_file(name, bytes);
        let declared = match entry.result {
            Ok(d) => d,
            Err(problems) => {
                let why = problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                return self.failed(ctx, slug, why).await;
            }
        };
        // Planning only reads; every write goes through the service.
        let plan = {
            let mut r = self.svc.store().read().await?;
            plan_org(&mut *r, &declared).await?
        };
        let mut outcome = None;
        if in_effect {
            let differences: Vec<_> = plan.changes.iter().map(difference).collect();
            let recorded = state
                .as_ref()
                .and_then(|s| s.drift.as_ref())
                .and_then(|d| serde_json::from_str::<Vec<DriftDifference>>(&d.differences).ok());
            if recorded.as_ref() != Some(&differences) {
                self.svc.record_drift(ctx, slug, &differences).await?;
            }
            if differences.is_empty() {
                return Ok(Outcome::UpToDate);
            }
            if !declared.heal {
                tracing::info!(differences = differences.len(), "drift detected");
                return Ok(Outcome::Drifted {
                    differences: differences.len(),
                    healed: false,
                });
            }
            outcome = Some(Outcome::Drifted {
                differences: differences.len(),
                healed: true,
            });
        }
        if !plan.refusals.is_empty() {
            let why = plan
                .refusals
                .iter()
                .map(|r| format!("{file}: {}: {}", r.field, r.reason))
                .collect::<Vec<_>>()
                .join("\n");
            return self.failed(ctx, slug, why).await;
        }
        let changes = plan.changes.len();
        let steps = match steps(&declared, &plan.changes) {
            Ok(s) => s,
            Err(e) => return self.failed(ctx, slug, e.to_string()).await,
        };
        match self
            .svc
            .apply_declared(ctx, &declared.slug, steps, &entry.text)
            .await
        {
            Ok(()) => {
                tracing::info!(changes, "applied");
                Ok(outcome.unwrap_or(Outcome::Applied { changes }))
            }
            Err(e) => self.failed(ctx, slug, e.to_string()).await,
        }
    }

    async fn failed(&self, ctx: &Ctx, slug: &str, why: String) -> Result<Outcome, RunError> {
        tracing::warn!(%slug, error = %why, "org not applied");
        self.svc
            .record_not_applied(ctx, slug, NotApplied::Failed, &why)
            .await?;
        Ok(Outcome::Failed(why))
    }
}
