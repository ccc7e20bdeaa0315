//! One reconcile pass: read the config repo at its newest commit, refuse the commit if its
//! signature is required and missing or wrong, then for each org file record it, plan it
//! against the store and apply the plan through the service (or, when that revision is
//! applied already, compare the live org with it: drift). Each org is on its own: an invalid
//! file or a refused change stops that org only.
//!
//! Fetching and parsing block (git2, disk), so they run on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use uos_service::{Ctx, DeclaredSource, NotApplied, Services};

use crate::git::{GitError, GitSource, Mirror};
use crate::metrics::Metrics;
use crate::plan::plan_org;
use crate::repo::{read_files, read_repo, OrgEntry, ORGS_DIR};
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

/// The repository at one revision.
#[derive(Debug)]
pub struct Snapshot {
    /// The commit id, or `dir:<sha256 of the files>` for a directory.
    pub revision: String,
    pub entries: Vec<OrgEntry>,
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
            let entries = read_repo(dir)?;
            let mut hash = Sha256::new();
            for e in &entries {
                hash.update(e.file.as_bytes());
                hash.update([0]);
                hash.update(e.text.as_bytes());
                hash.update([0]);
            }
            let revision = format!("dir:{}", hex::encode(hash.finalize()));
            let rejected = signers.map(|_| {
                "signatures are required, and a plain directory has no signed commits".to_owned()
            });
            Ok(Snapshot {
                revision,
                entries,
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
            let entries = read_files(mirror.org_files(&revision)?);
            Ok(Snapshot {
                revision,
                entries,
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

    /// Reconcile every org of `snapshot`.
    pub async fn apply_snapshot(
        &self,
        snapshot: Snapshot,
        check_drift: bool,
    ) -> Result<Pass, RunError> {
        let revision = snapshot.revision;
        if let Some(reason) = snapshot.rejected {
            return self.reject(revision, &snapshot.entries, reason).await;
        }
        let declared: Vec<String> = snapshot.entries.iter().map(slug_of).collect();
        let ctx = Ctx::reconciler(DeclaredSource {
            revision: revision.clone(),
            file: String::new(),
        });
        for slug in self.svc.forget_undeclared(&ctx, &declared).await? {
            tracing::info!(%slug, "no file declares the org any more: it is no longer managed");
        }
        let mut orgs = Vec::with_capacity(snapshot.entries.len());
        for entry in snapshot.entries {
            let slug = slug_of(&entry);
            let outcome = self.org(&revision, &slug, entry.file.clone(), entry, check_drift);
            let (file, outcome) = outcome.await?;
            orgs.push(OrgOutcome {
                slug,
                file,
                outcome,
            });
        }
        Ok(Pass { revision, orgs })
    }

    /// A commit refused for its signature: audited once, and shown on every org it declares.
    async fn reject(
        &self,
        revision: String,
        entries: &[OrgEntry],
        reason: String,
    ) -> Result<Pass, RunError> {
        let ctx = Ctx::reconciler(DeclaredSource {
            revision: revision.clone(),
            file: String::new(),
        });
        self.svc
            .record_rejected_commit(&ctx, &self.branch, &reason)
            .await?;
        let mut orgs = Vec::with_capacity(entries.len());
        for entry in entries {
            let slug = slug_of(entry);
            let ctx = Ctx::reconciler(DeclaredSource {
                revision: revision.clone(),
                file: entry.file.clone(),
            });
            self.svc.note_declared(&ctx, &slug).await?;
            self.svc
                .record_not_applied(&ctx, &slug, NotApplied::Rejected, &reason)
                .await?;
            orgs.push(OrgOutcome {
                slug,
                file: entry.file.clone(),
                outcome: Outcome::Rejected(reason.clone()),
            });
        }
        tracing::warn!(%revision, %reason, "config commit rejected");
        Ok(Pass { revision, orgs })
    }

    #[tracing::instrument(skip(self, entry, check_drift), fields(%revision, %slug))]
    async fn org(
        &self,
        revision: &str,
        slug: &str,
        file: String,
        entry: OrgEntry,
        check_drift: bool,
    ) -> Result<(String, Outcome), RunError> {
        let ctx = Ctx::reconciler(DeclaredSource {
            revision: revision.to_owned(),
            file: file.clone(),
        });
        self.svc.note_declared(&ctx, slug).await?;
        let declared = match entry.result {
            Ok(d) => d,
            Err(problems) => {
                let why = problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                return self.failed(&ctx, slug, file, why).await;
            }
        };
        let (control, state) = self.svc.declared_state(&ctx, slug).await?;
        if control.paused.is_some() || state.as_ref().is_some_and(|s| s.paused.is_some()) {
            return Ok((file, Outcome::Paused));
        }
        let applied_here = state
            .as_ref()
            .and_then(|s| s.last_applied_revision.as_deref())
            == Some(revision);
        if applied_here && !check_drift {
            return Ok((file, Outcome::UpToDate));
        }
        // Planning only reads; every write goes through the service.
        let plan = {
            let mut r = self.svc.store().read().await?;
            plan_org(&mut *r, &declared).await?
        };
        let mut outcome = None;
        if applied_here {
            let differences: Vec<_> = plan.changes.iter().map(difference).collect();
            self.svc.record_drift(&ctx, slug, &differences).await?;
            if differences.is_empty() {
                return Ok((file, Outcome::UpToDate));
            }
            if !declared.heal {
                tracing::info!(differences = differences.len(), "drift detected");
                return Ok((
                    file,
                    Outcome::Drifted {
                        differences: differences.len(),
                        healed: false,
                    },
                ));
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
                .map(|r| format!("{}: {}: {}", file, r.field, r.reason))
                .collect::<Vec<_>>()
                .join("\n");
            return self.failed(&ctx, slug, file, why).await;
        }
        let changes = plan.changes.len();
        let steps = match steps(&declared, &plan.changes) {
            Ok(s) => s,
            Err(e) => return self.failed(&ctx, slug, file, e.to_string()).await,
        };
        match self
            .svc
            .apply_declared(&ctx, &declared.slug, steps, &entry.text)
            .await
        {
            Ok(()) => {
                self.svc.record_drift(&ctx, slug, &[]).await?;
                tracing::info!(changes, "applied");
                Ok((file, outcome.unwrap_or(Outcome::Applied { changes })))
            }
            Err(e) => self.failed(&ctx, slug, file, e.to_string()).await,
        }
    }

    async fn failed(
        &self,
        ctx: &Ctx,
        slug: &str,
        file: String,
        why: String,
    ) -> Result<(String, Outcome), RunError> {
        tracing::warn!(%slug, error = %why, "org not applied");
        self.svc
            .record_not_applied(ctx, slug, NotApplied::Failed, &why)
            .await?;
        Ok((file, Outcome::Failed(why)))
    }
}

/// The org a file declares: its slug when it parsed, else the file's name.
fn slug_of(entry: &OrgEntry) -> String {
    match &entry.result {
        Ok(d) => d.slug.to_string(),
        Err(_) => entry
            .file
            .strip_prefix(&format!("{ORGS_DIR}/"))
            .unwrap_or(&entry.file)
            .trim_end_matches(".yaml")
            .to_owned(),
    }
}
