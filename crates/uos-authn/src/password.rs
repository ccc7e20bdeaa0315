//! Password hashing with argon2id (PHC strings), including a dummy verify that evens out timing
//! for unknown accounts.
//!
//! Every method here costs tens of milliseconds of CPU at the default parameters: never call
//! them directly on an async runtime thread (`uos-service` runs them on its hashing threads).

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use rand::RngCore as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};

use crate::AuthnError;

/// argon2id cost parameters (stored in every PHC string, so old hashes keep verifying after a
/// change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordParams {
    /// Memory per hash in KiB.
    pub memory_kib: u32,
    /// Passes over the memory (argon2 iterations).
    pub iterations: u32,
    /// Lanes (argon2 parallelism).
    pub parallelism: u32,
}

impl Default for PasswordParams {
    /// The OWASP Password Storage Cheat Sheet's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords with fixed argon2id parameters. Clones share their working
/// memory.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    params: PasswordParams,
    /// A hash of a random password made with the same parameters; verifying against it costs the
    /// same as verifying a real user's hash.
    dummy_hash: String,
    memory: Arc<MemoryPool>,
}

/// argon2 working memory (19 MiB per hash at the default parameters) kept between hashes.
/// Allocating it afresh costs a 19 MiB initialising write and, under concurrency, page faults
/// and unmaps on every hash; argon2 overwrites every block before reading it, so a reused
/// buffer needs no clearing. The pool keeps at most one buffer per core: callers run at most
/// that many hashes at once (`uos-service` has one hashing thread per core); a hash beyond
/// that allocates its own buffer and drops it.
#[derive(Debug)]
struct MemoryPool {
    buffers: Mutex<Vec<Vec<Block>>>,
    /// Buffers kept: one per core (read once; it is a cgroup lookup on Linux).
    max: usize,
}

impl MemoryPool {
    fn new() -> Self {
        Self {
            buffers: Mutex::default(),
            max: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn take(&self, blocks: usize) -> Vec<Block> {
        let mut memory = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        memory
    }

    /// Drops every buffer kept, returning their memory to the allocator (and, with the image's
    /// allocator settings, to the system).
    fn release(&self) {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn kept(&self) -> usize {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn give_back(&self, memory: Vec<Block>, blocks: usize) {
        // Only buffers of the configured size come back: one grown for an old, bigger hash
        // would otherwise stay resident for good.
        let mut pool = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        if memory.len() == blocks && pool.len() < self.max {
            pool.push(memory);
        }
    }
}

impl PasswordHasher {
    /// Validates the parameters and precomputes the dummy hash (so this costs one hash).
    pub fn new(params: PasswordParams) -> Result<Self, AuthnError> {
        let argon2_params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(AuthnError::InvalidParams)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params);
        let mut hasher = Self {
            argon2,
            params,
            dummy_hash: String::new(),
            memory: Arc::new(MemoryPool::new()),
        };
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        hasher.dummy_hash = hasher.hash(&hex::encode(random))?;
        Ok(hasher)
    }

    pub fn params(&self) -> PasswordParams {
        self.params
    }

    /// Frees the working memory kept between hashes (19 MiB per buffer at the default
    /// parameters). For when no hash has run for a while: the next one allocates afresh, which
    /// costs it a few milliseconds, while an idle replica stops holding memory it does not use.
    pub fn release_memory(&self) {
        self.memory.release();
    }

    /// How many working-memory buffers are kept for the next hashes.
    pub fn kept_buffers(&self) -> usize {
        self.memory.kept()
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, AuthnError> {
        let salt = SaltString::generate(&mut OsRng);
        let params = self.argon2.params();
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = self
            .raw_hash(&self.argon2, password, salt.as_salt(), output_len)
            .map_err(AuthnError::Hash)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(AuthnError::Hash)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// The argon2 output for `password` and `salt`, computed in pooled memory.
    fn raw_hash(
        &self,
        argon2: &Argon2<'_>,
        password: &str,
        salt: Salt<'_>,
        output_len: usize,
    ) -> argon2::password_hash::Result<Output> {
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let blocks = argon2.params().block_count();
        let mut memory = self.memory.take(blocks);
        let output = Output::init_with(output_len, |out| {
            Ok(argon2.hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                out,
                &mut memory,
            )?)
        });
        self.memory
            .give_back(memory, self.argon2.params().block_count());
        output
    }

    /// Whether `password` matches `phc`, using the parameters recorded in `phc`. `false` for a
    /// malformed PHC string or any algorithm other than argon2id. The final comparison is
    /// constant-time.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return false;
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let (Ok(params), Ok(version)) = (
            Params::try_from(&parsed),
            parsed.version.map(Version::try_from).transpose(),
        ) else {
            return false;
        };
        let argon2 = Argon2::new(Algorithm::Argon2id, version.unwrap_or_default(), params);
        // `Output`'s equality is constant-time.
        self.raw_hash(&argon2, password, salt, expected.len())
            .is_ok_and(|computed| computed == expected)
    }

    /// Spends the time of a real [`verify`](Self::verify) and learns nothing: call it when the
    /// account does not exist, so response timing cannot reveal which emails are registered.
    pub fn verify_dummy(&self, password: &str) {
        let _ = self.verify(password, &self.dummy_hash);
    }

    /// Whether `phc` was made with other parameters than this hasher's (or is unreadable), i.e.
    /// should be re-hashed after the next successful login.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(stored) = Params::try_from(&parsed) else {
            return true;
        };
        parsed.algorithm != Algorithm::Argon2id.ident()
            || stored.m_cost() != self.params.memory_kib
            || stored.t_cost() != self.params.iterations
            || stored.p_cost() != self.params.parallelism
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Cheap parameters: these tests check behaviour, not cost.
    fn cheap() -> PasswordHasher {
        PasswordHasher::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hash_verify_roundtrip() {
        let hasher = cheap();
        let phc = hasher.hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(hasher.verify("correct horse battery staple", &phc));
    }

    #[test]
    fn wrong_password_is_false() {
        let hasher = cheap();
        let phc = hasher.hash("secret-1").unwrap();
        assert!(!hasher.verify("secret-2", &phc));
        assert!(!hasher.verify("", &phc));
    }

    #[test]
    fn same_password_gets_different_salts() {
        let hasher = cheap();
        assert_ne!(hasher.hash("pw").unwrap(), hasher.hash("pw").unwrap());
    }

    #[test]
    fn malformed_phc_is_false() {
        let hasher = cheap();
        let phc = hasher.hash("pw").unwrap();
        for bad in [
            "",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=1024,t=1,p=1$",
            &phc[..phc.len() - 5],
            &phc.replace("argon2id", "argon2i"),
            &phc.replace("argon2id", "scrypt"),
        ] {
            assert!(!hasher.verify("pw", bad), "{bad:?} must not verify");
        }
    }

    #[test]
    fn verifies_hashes_made_with_other_params() {
        let old = cheap();
        let phc = old.hash("pw").unwrap();
        let new = PasswordHasher::new(PasswordParams {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        assert!(new.verify("pw", &phc));
        assert!(new.needs_rehash(&phc));
        assert!(!old.needs_rehash(&phc));
        assert!(new.needs_rehash("garbage"));
    }

    /// Hashes stored before the pooled implementation (the argon2 crate's own hasher) keep
    /// verifying, and ours verify there: the PHC strings are the same format.
    #[test]
    fn interoperates_with_the_argon2_crate() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let ours = cheap();
        let stock = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let theirs = stock.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(ours.verify("pw", &theirs));
        assert!(!ours.verify("pv", &theirs));
        let mine = ours.hash("pw").unwrap();
        let parsed = PasswordHash::new(&mine).unwrap();
        assert!(stock.verify_password(b"pw", &parsed).is_ok());
        assert!(stock.verify_password(b"pv", &parsed).is_err());
    }

    /// Reused memory carries nothing from one hash to the next, whatever sizes come through.
    #[test]
    fn pooled_memory_of_any_size_gives_the_same_answers() {
        let hasher = cheap();
        let bigger = PasswordHasher::new(PasswordParams {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 2,
        })
        .unwrap();
        let small = hasher.hash("one").unwrap();
        let large = bigger.hash("two").unwrap();
        for _ in 0..3 {
            assert!(hasher.verify("two", &large));
            assert!(hasher.verify("one", &small));
            assert!(!hasher.verify("one", &large));
            assert!(!hasher.verify("two", &small));
        }
        // Clones share the pool and still agree.
        let clone = hasher.clone();
        assert!(clone.verify("one", &small));
        assert_eq!(hasher.hash("x").unwrap().len(), small.len());
    }

    #[test]
    fn released_memory_is_allocated_afresh_and_answers_the_same() {
        let hasher = cheap();
        let phc = hasher.hash("kept").unwrap();
        assert_eq!(
            hasher.kept_buffers(),
            1,
            "a hash keeps its buffer for the next"
        );
        hasher.clone().release_memory();
        assert_eq!(hasher.kept_buffers(), 0, "clones share the pool");
        assert!(hasher.verify("kept", &phc));
        assert!(!hasher.verify("other", &phc));
        assert_eq!(hasher.kept_buffers(), 1);
    }

    #[test]
    fn verify_dummy_runs() {
        cheap().verify_dummy("anything");
    }

    #[test]
    fn invalid_params_are_an_error() {
        let err = PasswordHasher::new(PasswordParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0,
        })
        .unwrap_err();
        assert!(matches!(err, AuthnError::InvalidParams(_)), "{err:?}");
    }

    #[test]
    fn default_params_are_owasp_argon2id() {
        let params = PasswordParams::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19_456, 2, 1)
        );
        let hasher = PasswordHasher::new(params).unwrap();
        let phc = hasher.hash("pw").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify("pw", &phc));
        assert!(!hasher.verify("pW", &phc));
    }
}
