//! Password hashing threads: one per core, each taking the next argon2 job from one queue.
//!
//! A login spends ~90 % of its CPU in argon2, so the hash rate is the login rate. Dedicated
//! threads start the next hash the moment one ends. A semaphore around `spawn_blocking` would
//! hand each slot back through the async runtime, leaving a core idle until a runtime worker
//! got round to waking the next waiter (measured: 76 % of the argon2 bound against 84–88 %).
//!
//! Between hashes the hasher keeps its working memory (19 MiB per thread at the default
//! parameters), which spares each hash allocating and faulting it in. A replica that has not
//! hashed for [`IDLE_RELEASE`] frees it: logins come in bursts, and an idle replica should
//! not hold a third of its memory for the next one.

use crate::{Result, ServiceError};
use flume::RecvTimeoutError;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use uos_authn::PasswordHasher;

/// How long the hashing threads wait for work before freeing the hasher's kept memory. The
/// first hash after it pays a few milliseconds (on ~25 ms) to allocate its buffer again.
pub(crate) const IDLE_RELEASE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce(&PasswordHasher) + Send>;

/// The queue into the hashing threads. The threads end when the pool is dropped.
#[derive(Debug)]
pub(crate) struct HashPool {
    jobs: flume::Sender<Job>,
}

impl HashPool {
    /// `threads` hashing threads: one per core. More only thrash the caches with their
    /// 19 MiB blocks and make every hash slower.
    pub(crate) fn new(hasher: &PasswordHasher, threads: usize) -> std::io::Result<Self> {
        Self::with_idle_release(hasher, threads, IDLE_RELEASE)
    }

    /// [`new`](Self::new), freeing the kept memory after `idle` without work.
    pub(crate) fn with_idle_release(
        hasher: &PasswordHasher,
        threads: usize,
        idle: Duration,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let hasher = hasher.clone();
            std::thread::Builder::new()
                .name(format!("uos-argon2-{i}"))
                .spawn(move || loop {
                    match queue.recv_timeout(idle) {
                        // A panicking job drops its reply (the caller gets an error); the
                        // thread lives on, so the pool never shrinks.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&hasher)));
                        }
                        // Buffers a running hash holds are not in the pool: this frees
                        // only memory no thread is using.
                        Err(RecvTimeoutError::Timeout) => hasher.release_memory(),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Run `work` on a hashing thread and wait for its answer. If the caller stops waiting
    /// (the client went away) before a thread is free, the work is skipped.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |hasher| {
            if !reply.is_closed() {
                let _ = reply.send(work(hasher));
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| ServiceError::Internal("hashing threads gone".into()))?;
        answer
            .await
            .map_err(|_| ServiceError::Internal("hash job failed".into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;
    use uos_authn::PasswordParams;

    /// Cheap parameters: these tests are about the threads, not argon2.
    fn hasher() -> PasswordHasher {
        PasswordHasher::new(PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn runs_work_on_the_hashing_threads_and_answers() {
        let pool = HashPool::new(&hasher(), 2).unwrap();
        let phc = pool.run(|h| h.hash("a password").unwrap()).await.unwrap();
        let (right, wrong) = (phc.clone(), phc);
        assert!(pool
            .run(move |h| h.verify("a password", &right))
            .await
            .unwrap());
        assert!(!pool
            .run(move |h| h.verify("another", &wrong))
            .await
            .unwrap());
        let name = pool
            .run(|_| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("uos-argon2-"));
    }

    #[tokio::test]
    async fn idle_threads_free_the_kept_memory() {
        let hasher = hasher();
        let pool = HashPool::with_idle_release(&hasher, 2, Duration::from_millis(100)).unwrap();
        let phc = pool.run(|h| h.hash("a password").unwrap()).await.unwrap();
        assert!(hasher.kept_buffers() >= 1, "a hash keeps its buffer");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while hasher.kept_buffers() > 0 {
            assert!(std::time::Instant::now() < deadline, "memory still kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The next hash allocates again, and answers as before.
        assert!(pool
            .run(move |h| h.verify("a password", &phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_thread_lives_on() {
        let pool = HashPool::new(&hasher(), 1).unwrap();
        let failed = pool.run(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(failed, Err(ServiceError::Internal(_))));
        // The only thread survived the panic: it still takes work.
        assert_eq!(pool.run(|_| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn work_whose_caller_gave_up_is_skipped() {
        let pool = Arc::new(HashPool::new(&hasher(), 1).unwrap());
        // Hold the only thread until released, so the next job waits in the queue.
        let (started, on_thread) = tokio::sync::oneshot::channel();
        let (release, held) = mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move {
                pool.run(move |_| {
                    started.send(()).unwrap();
                    held.recv().unwrap();
                })
                .await
            }
        });
        on_thread.await.unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        // Queue a job, then drop its caller (the client went away) while the thread is held.
        tokio::select! {
            _ = pool.run(move |_| counter.fetch_add(1, Ordering::SeqCst)) => {
                unreachable!("the only thread is held")
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        // The queue is first in, first out: a job queued after the dropped one has run, so the
        // dropped one has been passed over.
        assert_eq!(pool.run(|_| 1).await.unwrap(), 1);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "the abandoned work never ran"
        );
    }
}
