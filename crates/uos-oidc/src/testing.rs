//! A real OpenID Connect provider for tests, and a scripted browser to log in through it.
//!
//! [`TestProvider`] runs the certified npm `oidc-provider` (pinned in
//! `testdata/provider/package.json`, with its own `node` from npm) on a free loopback port, with
//! one confidential client and the built-in dev login and consent pages. Any login name signs in
//! with any password: `alice` is `alice@example.com` (verified), a login holding `@` is that email,
//! a login starting with `unverified-` has an unverified email; the scope `corp` adds the custom
//! claims `corp_email` and `corp_name` (see `testdata/provider/provider.mjs`).
//!
//! [`login`] drives those pages over HTTP the way a browser does and stops at the redirect back
//! to the client, returning its `code` and `state` — so a service test can run the whole flow
//! through its own start and callback endpoints:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use uos_oidc::testing::{login, TestProvider};
//! let op = TestProvider::start("http://127.0.0.1/v1/auth/oidc/test/callback").await?;
//! let provider = uos_oidc::OidcProvider::discover(
//!     "test",
//!     op.config("http://127.0.0.1:8080/v1/auth/oidc/test/callback"),
//! )
//! .await?;
//! let (url, pending) = provider.start();
//! let callback = login(&url, "alice").await?;
//! assert_eq!(callback.state, pending.state);
//! let who = provider.finish(pending, &callback.code).await?;
//! assert_eq!(who.email.as_deref(), Some("alice@example.com"));
//! # Ok(()) }
//! ```
//!
//! The client is registered as a `native` application, so a registered loopback redirect URI
//! (`http://127.0.0.1/...`) matches on **any port** (RFC 8252 §7.3): a test may start the provider
//! before it knows its own server's port.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::LOCATION;
use url::Url;

use crate::ProviderConfig;

/// Anything that went wrong starting the provider or logging in.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TestingError(String);

impl TestingError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<reqwest::Error> for TestingError {
    fn from(err: reqwest::Error) -> Self {
        Self(crate::chain(&err))
    }
}

impl From<url::ParseError> for TestingError {
    fn from(err: url::ParseError) -> Self {
        Self(format!("bad URL: {err}"))
    }
}

/// Where the provider's `package.json`, lockfile and `provider.mjs` live.
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/provider")
}

fn installed(dir: &Path) -> bool {
    dir.join("node_modules/.bin/node").exists()
        && dir.join("node_modules/oidc-provider/package.json").exists()
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Run `npm ci` in [`provider_dir`] unless `node_modules` is already complete. Serialized within
/// the process and, through a lock file, across processes (test binaries run in parallel).
/// Blocking.
pub fn ensure_installed() -> Result<(), TestingError> {
    let dir = provider_dir();
    if installed(&dir) {
        return Ok(());
    }
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lock_path = dir.join(".install.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| TestingError::new(format!("opening {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| TestingError::new(format!("locking {}: {e}", lock_path.display())))?;
    if installed(&dir) {
        return Ok(());
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            TestingError::new(format!(
                "running `npm ci` in {} (is npm installed?): {e}",
                dir.display()
            ))
        })?;
    if !output.status.success() || !installed(&dir) {
        return Err(TestingError::new(format!(
            "`npm ci` in {} failed ({}):\n{}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        )));
    }
    Ok(())
}

/// How to run the [`TestProvider`].
#[derive(Clone, Debug, Default)]
pub struct TestProviderOptions {
    /// The client's registered redirect URIs (loopback ones match on any port).
    pub redirect_uris: Vec<String>,
    /// Put the scope claims (email, name, …) into the ID token as well. By default, as the spec
    /// prefers for the code flow, only userinfo serves them.
    pub claims_in_id_token: bool,
}

/// A running `oidc-provider` on `127.0.0.1`; killed on drop (and it exits by itself when this
/// process dies, as it watches its stdin).
pub struct TestProvider {
    child: Child,
    _stdin: Option<ChildStdin>,
    issuer: String,
    client_id: String,
    client_secret: String,
    logs: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for TestProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProvider")
            .field("pid", &self.child.id())
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_LINES: usize = 200;

impl TestProvider {
    /// Start a provider whose client has `redirect_uri` registered.
    pub async fn start(redirect_uri: &str) -> Result<Self, TestingError> {
        Self::start_with(TestProviderOptions {
            redirect_uris: vec![redirect_uri.to_owned()],
            ..TestProviderOptions::default()
        })
        .await
    }

    /// Start a provider: installs it first if needed (`npm ci`), then runs it on a free port and
    /// waits until its discovery document answers.
    pub async fn start_with(options: TestProviderOptions) -> Result<Self, TestingError> {
        if options.redirect_uris.is_empty() {
            return Err(TestingError::new("the test client needs a redirect URI"));
        }
        tokio::task::spawn_blocking(ensure_installed)
            .await
            .map_err(|e| TestingError::new(format!("installing the provider: {e}")))??;
        let mut last_error = TestingError::new("the provider did not start");
        // A free port can be taken between our probe and node's bind: try a few.
        for _ in 0..3 {
            match Self::spawn(&options).await {
                Ok(provider) => return Ok(provider),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn spawn(options: &TestProviderOptions) -> Result<Self, TestingError> {
        let port = free_port()?;
        let dir = provider_dir();
        let client_id = format!("uos-test-{}", random_token(6));
        let client_secret = random_token(24);
        let mut child = Command::new(dir.join("node_modules/.bin/node"))
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", &client_id)
            .env("CLIENT_SECRET", &client_secret)
            .env("REDIRECT_URIS", options.redirect_uris.join(" "))
            .env(
                "ID_TOKEN_CLAIMS",
                if options.claims_in_id_token { "1" } else { "0" },
            )
            .env("NODE_ENV", "test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestingError::new(format!("starting node in {}: {e}", dir.display())))?;
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            collect_lines(out, logs.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect_lines(err, logs.clone());
        }
        let mut provider = Self {
            _stdin: child.stdin.take(),
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            client_id,
            client_secret,
            logs,
        };
        provider.wait_ready().await?;
        Ok(provider)
    }

    async fn wait_ready(&mut self) -> Result<(), TestingError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TestingError::new(format!(
                    "oidc-provider exited ({status}) before answering:\n{}",
                    self.logs()
                )));
            }
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(TestingError::new(format!(
                    "oidc-provider did not answer on {url} within {STARTUP_TIMEOUT:?}:\n{}",
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// A [`ProviderConfig`] for this provider's client, with the defaults for the rest.
    pub fn config(&self, redirect_uri: &str) -> ProviderConfig {
        ProviderConfig::new(
            self.issuer.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
            redirect_uri,
        )
    }

    /// The provider's recent output (stdout and stderr), for failure messages.
    pub fn logs(&self) -> String {
        let lines = self
            .logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_lines(stream: impl Read + Send + 'static, logs: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut logs = logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if logs.len() == LOG_LINES {
                logs.pop_front();
            }
            logs.push_back(line);
        }
    });
}

fn free_port() -> Result<u16, TestingError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| TestingError::new(format!("finding a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestingError::new(format!("finding a free port: {e}")))
}

/// Random URL-safe text from `bytes` random bytes.
fn random_token(bytes: u32) -> String {
    openidconnect::CsrfToken::new_random_len(bytes)
        .secret()
        .clone()
}

// ---------------------------------------------------------------------------------------------
// The scripted browser

/// The redirect (or form post) back to the client, as the provider sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackParams {
    pub code: String,
    pub state: String,
    /// RFC 9207 `iss`, when the provider sends it (oidc-provider does).
    pub iss: Option<String>,
    /// The whole callback URL (for a form post: the form's action with the fields as a query).
    pub redirect_url: String,
}

const MAX_STEPS: usize = 20;

/// Log in as `login_name` (any password) through the provider's interaction pages, like a
/// browser with a fresh cookie jar: start at `authorize_url` (what the relying party redirected
/// the browser to — or a URL of the relying party that redirects there), follow redirects, submit
/// each page's form (login, then consent), and stop at the redirect to the authorization
/// request's `redirect_uri` **without following it**. A provider error, an `error=` redirect to
/// the client, or a redirect leaving the provider for anywhere else is an `Err`.
pub async fn login(authorize_url: &str, login_name: &str) -> Result<CallbackParams, TestingError> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;

    enum Next {
        Get(Url),
        Post(Url, Vec<(String, String)>),
    }
    // Learnt from the authorization request once the browser gets there.
    let mut client: Option<(url::Origin, Url)> = None;
    let mut next = Next::Get(Url::parse(authorize_url)?);
    for _ in 0..MAX_STEPS {
        let response = match next {
            Next::Get(url) => {
                if client.is_none() {
                    client = authorization_request(&url);
                }
                browser.get(url).send().await?
            }
            Next::Post(url, fields) => browser.post(url).form(&fields).send().await?,
        };
        let here = response.url().clone();
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    TestingError::new(format!("{status} from {here} without a Location"))
                })?;
            let target = here.join(location)?;
            if let Some(callback) = back_at_client(&client, target.clone())? {
                return Ok(callback);
            }
            next = Next::Get(target);
            continue;
        }
        let body = response.text().await?;
        if !status.is_success() {
            return Err(TestingError::new(format!(
                "{status} from {here}: {}",
                page_text(&body)
            )));
        }
        let form = find_post_form(&body).ok_or_else(|| {
            TestingError::new(format!(
                "{here} shows no form to submit: {}",
                page_text(&body)
            ))
        })?;
        let action = here.join(&form.action)?;
        let fields = form.fill(login_name);
        // response_mode=form_post: the page posts the result to the client.
        let mut posted = action.clone();
        posted.query_pairs_mut().extend_pairs(&fields);
        if let Some(callback) = back_at_client(&client, posted)? {
            return Ok(callback);
        }
        next = Next::Post(action, fields);
    }
    Err(TestingError::new(format!(
        "no redirect back to the client after {MAX_STEPS} steps"
    )))
}

/// For an OAuth authorization request (`response_type` and `redirect_uri` in the query): the
/// provider's origin and the redirect URI.
fn authorization_request(url: &Url) -> Option<(url::Origin, Url)> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    param("response_type")?;
    let redirect_uri = Url::parse(&param("redirect_uri")?).ok()?;
    Some((url.origin(), redirect_uri))
}

/// Where the flow ends: `Some` at the client's redirect URI (an `Err` if it carries an error), an
/// `Err` anywhere else off the provider, `None` while on the provider (or before it).
fn back_at_client(
    client: &Option<(url::Origin, Url)>,
    target: Url,
) -> Result<Option<CallbackParams>, TestingError> {
    let Some((provider, redirect_uri)) = client else {
        return Ok(None);
    };
    let same_endpoint = |a: &Url, b: &Url| a.origin() == b.origin() && a.path() == b.path();
    if same_endpoint(&target, redirect_uri) {
        return callback_params(target).map(Some);
    }
    if target.origin() != *provider {
        return Err(TestingError::new(format!(
            "the provider sent the browser to {target}, not to the redirect URI {redirect_uri}"
        )));
    }
    Ok(None)
}

fn callback_params(url: Url) -> Result<CallbackParams, TestingError> {
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = get("error") {
        return Err(TestingError::new(format!(
            "the provider redirected with error={error}: {}",
            get("error_description").unwrap_or_default()
        )));
    }
    let code = get("code").ok_or_else(|| TestingError::new(format!("no code in {url}")))?;
    let state = get("state").ok_or_else(|| TestingError::new(format!("no state in {url}")))?;
    Ok(CallbackParams {
        code,
        state,
        iss: get("iss"),
        redirect_url: url.to_string(),
    })
}

/// A page's text, tags stripped and cut short, for error messages.
fn page_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    let body = html.find("<body").map(|i| &html[i..]).unwrap_or(html);
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = decode_entities(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    text.chars().take(400).collect()
}

#[derive(Debug, Default)]
struct Form {
    action: String,
    inputs: Vec<Vec<(String, String)>>,
}

impl Form {
    /// The fields a person would submit: hidden values kept, the login name in the user field,
    /// any password in password fields, checked boxes, named submit buttons' values.
    fn fill(&self, login_name: &str) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for attrs in &self.inputs {
            let attr = |name: &str| {
                attrs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let Some(name) = attr("name") else { continue };
            let kind = attr("type").unwrap_or("text").to_ascii_lowercase();
            let value = attr("value").unwrap_or("");
            let value = match kind.as_str() {
                "password" => "any-password".to_owned(),
                "checkbox" | "radio" if attr("checked").is_none() => continue,
                "text" | "email" if value.is_empty() || is_user_field(name) => {
                    login_name.to_owned()
                }
                _ => value.to_owned(),
            };
            fields.push((name.to_owned(), value));
        }
        fields
    }
}

fn is_user_field(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "login" | "username" | "user" | "email"
    )
}

/// The first `<form method="post">` of a page, with its inputs and named buttons.
fn find_post_form(html: &str) -> Option<Form> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(offset) = lower[from..].find("<form") {
        let start = from + offset;
        let (attrs, tag_end) = parse_tag(html, start + "<form".len());
        let end = lower[tag_end..]
            .find("</form")
            .map_or(html.len(), |i| tag_end + i);
        from = end;
        let method = attrs
            .iter()
            .find(|(k, _)| k == "method")
            .map(|(_, v)| v.to_ascii_lowercase());
        if method.as_deref() != Some("post") {
            continue;
        }
        let action = attrs
            .iter()
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut inputs = Vec::new();
        let mut at = tag_end;
        while at < end {
            let next_input = lower[at..end].find("<input").map(|i| (at + i, "<input"));
            let next_button = lower[at..end].find("<button").map(|i| (at + i, "<button"));
            let Some((pos, tag)) = [next_input, next_button]
                .into_iter()
                .flatten()
                .min_by_key(|(pos, _)| *pos)
            else {
                break;
            };
            let (mut attrs, tag_end) = parse_tag(html, pos + tag.len());
            if tag == "<button" {
                // A button submits its own name=value only when named; treat it as an input.
                if !attrs.iter().any(|(k, _)| k == "name") {
                    at = tag_end;
                    continue;
                }
                attrs.retain(|(k, _)| k != "type");
                attrs.push(("type".into(), "submit".into()));
            }
            inputs.push(attrs);
            at = tag_end;
        }
        return Some(Form { action, inputs });
    }
    None
}

/// The attributes of the tag whose name ends at `at`, and the index just past its `>`.
/// Attribute names are lower-cased, values decoded.
fn parse_tag(html: &str, at: usize) -> (Vec<(String, String)>, usize) {
    let bytes = html.as_bytes();
    let mut i = at;
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            return (attrs, i);
        }
        if bytes[i] == b'>' {
            return (attrs, i + 1);
        }
        let name_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let value_start = i + 1;
                i = value_start;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                value = decode_entities(&html[value_start..i.min(bytes.len())]);
                i = (i + 1).min(bytes.len());
            } else {
                let value_start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&html[value_start..i]);
            }
        }
        if !name.is_empty() {
            attrs.push((name, value));
        }
    }
}

/// Decode the HTML character references that templates produce when escaping.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_post_form() {
        let html = r#"<html><body>
            <form action="/search" method="get"><input name="q"></form>
            <FORM autocomplete="off" action="/interaction/a&amp;b/login" method='POST'>
              <input type="hidden" name="prompt" value="login"/>
              <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
              <input required type="password" name="password" placeholder="and password" >
              <input type=checkbox name=remember>
              <button type="submit" class="login login-submit">Sign-in</button>
              <button name="choice" value="yes">Yes</button>
            </FORM></body></html>"#;
        let form = find_post_form(html).unwrap();
        assert_eq!(form.action, "/interaction/a&b/login");
        assert_eq!(
            form.fill("alice"),
            vec![
                ("prompt".to_owned(), "login".to_owned()),
                ("login".to_owned(), "alice".to_owned()),
                ("password".to_owned(), "any-password".to_owned()),
                ("choice".to_owned(), "yes".to_owned()),
            ]
        );
        assert!(find_post_form("<p>no forms</p>").is_none());
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(
            decode_entities("a&amp;b&#39;c&#x2F;d&quot;&unknown; & e"),
            "a&b'c/d\"&unknown; & e"
        );
    }

    #[test]
    fn callback_errors_are_errors() {
        let ok = callback_params(
            Url::parse("http://127.0.0.1:1/cb?code=c&state=s&iss=http%3A%2F%2Fop").unwrap(),
        )
        .unwrap();
        assert_eq!((ok.code.as_str(), ok.state.as_str()), ("c", "s"));
        assert_eq!(ok.iss.as_deref(), Some("http://op"));
        assert!(callback_params(
            Url::parse("http://127.0.0.1:1/cb?error=access_denied&state=s").unwrap()
        )
        .is_err());
    }
}
