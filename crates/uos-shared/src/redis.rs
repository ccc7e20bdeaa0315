//! Shared state in Redis (≥ 6.2, for `GETDEL`): the production adapter once there is more than
//! one replica.
//!
//! Commands go through a [`ConnectionManager`], which reconnects by itself: a command sent
//! while Redis is away fails with [`SharedError::Unavailable`] and a later one succeeds once it
//! is back. Invalidations arrive on a dedicated pub/sub connection owned by a background task
//! that forwards them into a local broadcast channel and, whenever that connection had to be
//! re-established, sends [`Invalidation::Everything`] locally, because messages published while
//! it was gone are lost for good (Redis pub/sub keeps nothing).

use crate::INVALIDATION_BUFFER;
use crate::{count_of, ttl_millis, Hit, Invalidation, SharedError, SharedState, MAX_TTL};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use ::redis::{Client, Msg, RedisError, Script, TlsCertificates, Value};
use async_trait::async_trait;
use futures::StreamExt;
use std::fmt;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command may wait for its reply: a stalled Redis must not stall logins forever.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The pub/sub connection only ever receives, so a peer that vanished without closing the
/// socket (a dead host, a dropped NAT entry) would go unnoticed; a periodic ping notices.
const PUBSUB_PING_EVERY: Duration = Duration::from_secs(15);
/// Backoff between attempts to get the pub/sub connection back.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

/// Counts one hit in a fixed window atomically: the window's lifetime is set by the hit that
/// creates the key, not by later ones (so retrying does not push the window out). A counter
/// somehow left without a lifetime gets one too, rather than locking someone out forever.
/// Returns `{count, ttl_ms}`. The scripts below start with it.
const HIT_FN: &str = r"
local function hit(key, window)
  local count = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if count == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = tonumber(window)
  end
  return {count, ttl}
end
";

/// `hit` of KEYS[1] in a window of ARGV[1] ms.
const HIT_SCRIPT: &str = "return hit(KEYS[1], ARGV[1])";

/// As `hit`, counting ARGV[2] at once in a window of ARGV[1] ms. Returns `{count, ttl_ms}`.
const ADD_SCRIPT: &str = r"
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// `hit` of the gate KEYS[1]; if its count is within ARGV[2], `hit` of KEYS[2] as well.
/// Returns `{gate_count, gate_ttl_ms}` or `{gate_count, gate_ttl_ms, count, ttl_ms}`.
const HIT_GATED_SCRIPT: &str = r"
local gate = hit(KEYS[1], ARGV[1])
if gate[1] > tonumber(ARGV[2]) then
  return gate
end
local counted = hit(KEYS[2], ARGV[1])
return {gate[1], gate[2], counted[1], counted[2]}
";

/// `lock_out`: one lockout counted in KEYS[2] (window ARGV[1] ms), then KEYS[1], if it
/// exists, lives for `lock_secs(locks, ARGV[2], ARGV[3])` seconds, which it returns. The
/// arithmetic is `lock_secs`'s (whole numbers well within a double's exact range: the period
/// never exceeds ARGV[3]).
const LOCK_OUT_SCRIPT: &str = r"
local locks = hit(KEYS[2], ARGV[1])[1]
local doublings = math.min(math.max(locks - 1, 0), 20)
local secs = math.max(math.min(tonumber(ARGV[2]) * 2 ^ doublings, tonumber(ARGV[3])), 1)
redis.call('PEXPIRE', KEYS[1], string.format('%d', secs * 1000))
return secs
";

/// Shared state in Redis. Every key is stored as `prefix + key` and invalidations travel on
/// the channel `prefix + "invalidations"`, so deployments (or tests) sharing one Redis under
/// different prefixes never see each other.
pub struct RedisState {
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    hit_script: Script,
    add_script: Script,
    hit_gated_script: Script,
    lock_out_script: Script,
    tx: broadcast::Sender<Invalidation>,
    subscriber: AbortOnDrop,
}

impl fmt::Debug for RedisState {
    // The URL stays out: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .field("channel", &self.channel)
            .field("subscriber_running", &!self.subscriber.0.is_finished())
            .finish_non_exhaustive()
    }
}

/// Stops the pub/sub task when the state is dropped, closing its connection.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisState {
    /// Connect to Redis at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://`
    /// for TLS with the system's trust store) and subscribe to invalidations. Fails if the URL
    /// is malformed or Redis does not answer: a replica configured for Redis must not start
    /// on private state without saying so.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, SharedError> {
        Self::connect_with_ca(url, prefix, None).await
    }

    /// [`connect`](Self::connect), trusting only the CA certificates in `ca_pem` (PEM) for a
    /// `rediss://` URL: a private CA, as in most clusters. `None` trusts the system's store.
    pub async fn connect_with_ca(
        url: &str,
        prefix: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, SharedError> {
        // The URL is left out of errors and logs: it may carry a password.
        let client = match ca_pem {
            None => Client::open(url),
            Some(_) if !url.starts_with("rediss://") => {
                return Err(SharedError::Config(
                    "a CA certificate is for rediss:// URLs only".into(),
                ))
            }
            Some(ca) => {
                check_ca(ca)?;
                Client::build_with_tls(
                    url,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.to_vec()),
                    },
                )
            }
        }
        .map_err(|e| SharedError::Config(format!("invalid Redis URL or CA certificate: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Few, short retries: a command waits on them, and the manager tries again on the
            // next command anyway.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(error)?;
        let channel = format!("{prefix}invalidations");
        // Subscribed before returning, so whatever is published after `connect` is received.
        let pubsub = subscribe_to(&client, &channel).await?;
        let (tx, _) = broadcast::channel(INVALIDATION_BUFFER);
        let subscriber = AbortOnDrop(tokio::spawn(run_subscriber(
            client,
            channel.clone(),
            tx.clone(),
            pubsub,
        )));
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            channel,
            hit_script: Script::new(&format!("{HIT_FN}{HIT_SCRIPT}")),
            add_script: Script::new(ADD_SCRIPT),
            hit_gated_script: Script::new(&format!("{HIT_FN}{HIT_GATED_SCRIPT}")),
            lock_out_script: Script::new(&format!("{HIT_FN}{LOCK_OUT_SCRIPT}")),
            tx,
            subscriber,
        })
    }

    /// The key prefix this state was connected with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel invalidations travel on (`prefix + "invalidations"`).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Keys are binary-safe in Redis and sent as bulk strings, so any `key` is fine as it is.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// A CA bundle must hold at least one PEM certificate and nothing malformed: otherwise the
/// client would trust nothing and every connection would fail its handshake, later and less
/// clearly.
fn check_ca(ca_pem: &[u8]) -> Result<(), SharedError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SharedError::Config(format!("the Redis CA is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(SharedError::Config(
            "the Redis CA holds no PEM certificate".into(),
        ));
    }
    Ok(())
}

/// Connect the dedicated pub/sub connection and wait until the subscription is confirmed.
async fn subscribe_to(client: &Client, channel: &str) -> Result<PubSub, SharedError> {
    let mut pubsub = timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| SharedError::Unavailable("timed out connecting for pub/sub".into()))?
        .map_err(error)?;
    timeout(RESPONSE_TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| SharedError::Unavailable("timed out subscribing".into()))?
        .map_err(error)?;
    Ok(pubsub)
}

/// The pub/sub task: forward messages until the connection is lost, then get it back (with
/// backoff, forever: it ends only when the state is dropped) and tell local caches to start
/// over.
async fn run_subscriber(
    client: Client,
    channel: String,
    tx: broadcast::Sender<Invalidation>,
    mut pubsub: PubSub,
) {
    loop {
        forward(pubsub, &channel, &tx).await;
        tracing::warn!(%channel, "redis pub/sub connection lost; reconnecting");
        let mut delay = RECONNECT_MIN_DELAY;
        pubsub = loop {
            match subscribe_to(&client, &channel).await {
                Ok(pubsub) => break pubsub,
                Err(e) => {
                    tracing::warn!(%channel, error = %e, retry_in = ?delay, "redis pub/sub reconnect failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                }
            }
        };
        tracing::info!(%channel, "redis pub/sub reconnected");
        // Sent only once subscribed again: anything published from here on arrives as usual,
        // and anything published while away is covered by dropping everything.
        let _ = tx.send(Invalidation::Everything);
    }
}

/// Forward invalidations from `pubsub` into `tx`; returns once the connection is gone.
async fn forward(pubsub: PubSub, channel: &str, tx: &broadcast::Sender<Invalidation>) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + PUBSUB_PING_EVERY,
        PUBSUB_PING_EVERY,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => deliver(&msg, channel, tx),
                // The connection's reader ended: the socket closed or failed.
                None => return,
            },
            _ = ping.tick() => {
                match timeout(RESPONSE_TIMEOUT, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(%channel, error = %e, "redis pub/sub ping failed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%channel, "redis pub/sub ping timed out");
                        return;
                    }
                }
            }
        }
    }
}

fn deliver(msg: &Msg, channel: &str, tx: &broadcast::Sender<Invalidation>) {
    match serde_json::from_slice::<Invalidation>(msg.get_payload_bytes()) {
        // No receivers is fine: nothing is cached yet.
        Ok(inv) => {
            let _ = tx.send(inv);
        }
        // Someone else's message, or a newer replica's message kind: not ours to act on, and
        // no reason to stop listening.
        Err(e) => tracing::warn!(
            %channel,
            error = %e,
            len = msg.get_payload_bytes().len(),
            "ignoring malformed invalidation message"
        ),
    }
}

/// Connection trouble is `Unavailable` (callers may retry or fail open/closed); anything else
/// is the server saying no.
fn error(e: RedisError) -> SharedError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        SharedError::Unavailable(e.to_string())
    } else {
        SharedError::Backend(e.to_string())
    }
}

/// Redis reports -2 (no key) or -1 (no expiry) instead of a lifetime.
fn ttl_from(ms: i64) -> Duration {
    u64::try_from(ms).map_or(Duration::ZERO, Duration::from_millis)
}

#[async_trait]
impl SharedState for RedisState {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, SharedError> {
        let mut conn = self.conn.clone();
        let (count, ttl) = self
            .hit_script
            .key(self.key(key))
            .arg(ttl_millis(window))
            .invoke_async::<(u64, i64)>(&mut conn)
            .await
            .map_err(error)?;
        Ok(Hit {
            count,
            ttl: ttl_from(ttl),
        })
    }

    async fn add(&self, key: &str, n: u64, window: Duration) -> Result<Hit, SharedError> {
        let mut conn = self.conn.clone();
        let (count, ttl) = self
            .add_script
            .key(self.key(key))
            .arg(ttl_millis(window))
            .arg(n)
            .invoke_async::<(u64, i64)>(&mut conn)
            .await
            .map_err(error)?;
        Ok(Hit {
            count,
            ttl: ttl_from(ttl),
        })
    }

    /// One round trip for both counts (a login's address and account).
    async fn hit_gated(
        &self,
        gate: &str,
        gate_limit: u64,
        key: &str,
        window: Duration,
    ) -> Result<(Hit, Option<Hit>), SharedError> {
        let mut conn = self.conn.clone();
        let counts = self
            .hit_gated_script
            .key(self.key(gate))
            .key(self.key(key))
            .arg(ttl_millis(window))
            .arg(gate_limit)
            .invoke_async::<Vec<i64>>(&mut conn)
            .await
            .map_err(error)?;
        let hit = |count: i64, ttl: i64| -> Result<Hit, SharedError> {
            Ok(Hit {
                count: u64::try_from(count)
                    .map_err(|_| SharedError::Backend(format!("negative count {count}")))?,
                ttl: ttl_from(ttl),
            })
        };
        match counts[..] {
            [gate_count, gate_ttl] => Ok((hit(gate_count, gate_ttl)?, None)),
            [gate_count, gate_ttl, count, ttl] => {
                Ok((hit(gate_count, gate_ttl)?, Some(hit(count, ttl)?)))
            }
            _ => Err(SharedError::Backend(format!(
                "gated hit answered {counts:?}"
            ))),
        }
    }

    async fn peek(&self, key: &str) -> Result<Hit, SharedError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        // MULTI/EXEC: the value and its lifetime from the same instant.
        let (value, ttl) = ::redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async::<(Option<String>, i64)>(&mut conn)
            .await
            .map_err(error)?;
        match value {
            Some(value) => Ok(Hit {
                count: count_of(&value)?,
                ttl: ttl_from(ttl),
            }),
            None => Ok(Hit {
                count: 0,
                ttl: Duration::ZERO,
            }),
        }
    }

    async fn extend(&self, key: &str, ttl: Duration) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        // PEXPIRE on an absent key does nothing (and says 0), as documented.
        ::redis::cmd("PEXPIRE")
            .arg(self.key(key))
            .arg(ttl_millis(ttl))
            .query_async::<i64>(&mut conn)
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn lock_out(
        &self,
        key: &str,
        history: &str,
        history_window: Duration,
        base_secs: u64,
        max_secs: u64,
    ) -> Result<Duration, SharedError> {
        let mut conn = self.conn.clone();
        // Capped so the script's arithmetic stays exact and PEXPIRE's argument valid.
        let cap = MAX_TTL.as_secs();
        let secs = self
            .lock_out_script
            .key(self.key(key))
            .key(self.key(history))
            .arg(ttl_millis(history_window))
            .arg(base_secs.min(cap))
            .arg(max_secs.min(cap))
            .invoke_async::<u64>(&mut conn)
            .await
            .map_err(error)?;
        Ok(Duration::from_secs(secs))
    }

    async fn clear(&self, key: &str) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<i64>(&mut conn)
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn put_once(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, SharedError> {
        let mut conn = self.conn.clone();
        // SET NX replies OK when it set the key and nil when the key was there.
        let reply = ::redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl))
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(error)?;
        Ok(reply.is_some())
    }

    async fn take(&self, key: &str) -> Result<Option<String>, SharedError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("GETDEL")
            .arg(self.key(key))
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(error)
    }

    async fn publish(&self, msg: &Invalidation) -> Result<(), SharedError> {
        let payload = serde_json::to_string(msg)
            .map_err(|e| SharedError::Backend(format!("encoding an invalidation: {e}")))?;
        let mut conn = self.conn.clone();
        // This replica receives its own message back through its subscription, like every
        // other replica, so it is not also sent locally (that would deliver it twice).
        ::redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(error)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.tx.subscribe()
    }
}
